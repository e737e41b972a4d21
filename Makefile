# durable-kafka developer tasks. `make test` is the one command: it makes the venv, starts the
# local Kafka broker (assembled from Maven Central on first use) and runs the whole suite.
#
#   make venv          .venv with the project installed editable (+ dev extras), only when needed
#   make broker-up     start (or find) the local broker on 127.0.0.1:9092, state in .state/kafka
#                      SECURE=1: the SASL_SSL broker with ACLs on 127.0.0.1:9192, state in
#                      .state/kafka-secure (also for broker-down / broker-status; docs/SECURITY.md)
#   make broker-down   stop it
#   make broker-status
#   make cluster-up    start (or find) three KRaft nodes on 127.0.0.1:9292-9294 (controllers
#                      9295-9297), state in .state/cluster; replication factor 3, min ISR 2
#   make cluster-down  stop them (the cluster tests in `make test` start it when needed)
#   make cluster-status
#   make lint          ruff, and mypy (strict on durable_kafka/ and processors/; pyproject.toml)
#   make test          venv + broker-up + lint + the whole pytest suite (its cluster tests start the cluster)
#   make test-unit     the tests that need no broker
#   make chaos         the chaos scenarios (tests/chaos) and the long crash/scale tests of
#                      tests/integration (marker chaos) at full size (CHAOS_SCALE=1), with the
#                      full broker-failure runs on the cluster (minutes)
#   make soak          steady load + kill -9 every KILL_EVERY for DURATION (default 20m), RSS report
#   make orders        the faust-streaming order service example (examples/orders) on the local broker
#   make bench-triggers  trigger routes vs Client.schedule_new_orchestration: started/s, latency
#   make dashboard-screenshots  the dashboard's browser tests, writing each page to docs/img/
#   make bench-payloads  5 MB payloads through the engine vs plain produce/consume of the same bytes
#   make clean-state   stop the broker and delete its state (topics, offsets, cluster id)

PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.durable-kafka-installed
STATE_DIR := .state
KAFKA_PORT ?= 9092
KAFKA_CONTROLLER_PORT ?= 9093
SECURE ?=
SECURE_KAFKA_PORT ?= 9192
SECURE_KAFKA_CONTROLLER_PORT ?= 9193
BROKER := $(VENV_PY) -m durable_kafka.connectors.broker
ifeq ($(SECURE),1)
BROKER_STATE := $(STATE_DIR)/kafka-secure
BROKER_ARGS := --secure --port $(SECURE_KAFKA_PORT) --controller-port $(SECURE_KAFKA_CONTROLLER_PORT) \
	--state-dir $(BROKER_STATE)
else
BROKER_STATE := $(STATE_DIR)/kafka
BROKER_ARGS := --port $(KAFKA_PORT) --controller-port $(KAFKA_CONTROLLER_PORT) --state-dir $(BROKER_STATE)
endif
PYTEST_ARGS ?=
CLUSTER_BASE_PORT ?= 9292
CLUSTER := $(VENV_PY) -m durable_kafka.connectors.cluster
CLUSTER_ARGS := --base-port $(CLUSTER_BASE_PORT) --state-dir $(STATE_DIR)/cluster

export DURABLE_KAFKA_BOOTSTRAP ?= 127.0.0.1:$(KAFKA_PORT)
export DURABLE_KAFKA_CLUSTER_BASE_PORT := $(CLUSTER_BASE_PORT)

.PHONY: orders bench-triggers bench-payloads venv broker-up broker-down broker-status cluster-up cluster-down cluster-status lint test test-unit \
	chaos clean-state

venv: $(VENV_STAMP)

# Re-installs only when pyproject.toml changes (or the venv is missing).
$(VENV_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
		{ echo "durable-kafka needs Python >= 3.11; set PYTHON=/path/to/python3.11" >&2; exit 1; }
	@test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(VENV_STAMP)

broker-up: venv
	$(BROKER) up $(BROKER_ARGS)

broker-down: venv
	$(BROKER) down $(BROKER_ARGS)

broker-status: venv
	$(BROKER) status $(BROKER_ARGS)

cluster-up: venv
	$(CLUSTER) up $(CLUSTER_ARGS)

cluster-down: venv
	$(CLUSTER) down $(CLUSTER_ARGS)

cluster-status: venv
	$(CLUSTER) status $(CLUSTER_ARGS)

# mypy cannot follow pyproject's package-dir mapping (streams/ -> durable_kafka.streams ...), so
# it checks a tree of links under .state/typecheck laid out like the installed package.
TYPECHECK := $(STATE_DIR)/typecheck
lint: venv
	$(VENV)/bin/ruff check .
	@rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/durable_kafka
	@for f in durable_kafka/*.py; do ln -s "$(CURDIR)/$$f" $(TYPECHECK)/durable_kafka/; done
	@for d in durable_kafka/scheduled; do ln -s "$(CURDIR)/$$d" $(TYPECHECK)/durable_kafka/; done
	@for d in streams processors connectors schemas; do ln -s "$(CURDIR)/$$d" $(TYPECHECK)/durable_kafka/$$d; done
	cd $(TYPECHECK) && $(CURDIR)/$(VENV)/bin/mypy --config-file $(CURDIR)/pyproject.toml -p durable_kafka

# pytest's exit status is kept in .state/pytest.rc for .ci/run; 5 (no tests collected) fails.
# tests/integration/test_security.py starts the SECURE=1 broker itself when it is not running.
# lint runs first: a ruff or mypy finding fails the run before any test starts.
test: venv broker-up lint
	@mkdir -p $(STATE_DIR)
	@$(VENV_PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; echo $$rc > $(STATE_DIR)/pytest.rc; \
		if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; fi; \
		exit $$rc

test-unit: venv
	$(VENV_PY) -m pytest -q -m 'not integration' $(PYTEST_ARGS)

clean-state: broker-down
	rm -rf $(BROKER_STATE)

# ---- demo and benchmark targets go below this line ------------------------------------------

TIMER_SECONDS ?= 3

.PHONY: demo aggregator dashboard-screenshots bench bench-limit bench-entities bench-latency bench-recovery bench-restore bench-txn chaos soak

# The chaos suite at full size (the normal suite runs it scaled down: DK_CHAOS_SCALE defaults
# to 0.2, tests/sizes.py), plus the full cluster runs (kill -9 of the busiest leader, of the active
# controller, a rolling restart) under continuous load, plus the tests of tests/integration marked
# `chaos` at their full sizes (kill -9 mid-stream of 200 orchestrations, 2,000 trigger records,
# 1,000 entity signals, 200 schedules; 600 routed requests; a 50 MB payload); the cluster is left
# running for the next run. Each scenario prints its one-line summary; see docs/RELIABILITY.md.
CHAOS_SCALE ?= 1
chaos: venv broker-up cluster-up
	DK_CHAOS_SCALE=$(CHAOS_SCALE) $(VENV_PY) -m pytest -q -s --chaos -m chaos tests/chaos tests/integration $(PYTEST_ARGS)

# make soak DURATION=20m KILL_EVERY=3m: mixed load at half the measured maximum, kill -9 loop,
# RSS of every process over time, the lost/duplicated/stuck ledger at the end.
DURATION ?= 20m
KILL_EVERY ?= 3m
SOAK_ARGS ?=
soak: venv broker-up
	$(VENV_PY) tests/chaos/soak.py --duration $(DURATION) --kill-every $(KILL_EVERY) $(SOAK_ARGS)

# The main job: broker up, a real worker in this process, the seed's orchestration end to end.
demo: venv broker-up
	$(VENV_PY) -m examples.demo --timer-seconds $(TIMER_SECONDS)

# The dashboard's browser tests with a screenshot of each page written to docs/img/ (README).
dashboard-screenshots: venv broker-up
	DASHBOARD_SCREENSHOTS=1 $(VENV_PY) -m pytest -q tests/integration/test_dashboard.py $(PYTEST_ARGS)

# The entities sample (Durable Functions' aggregator pattern).
aggregator: venv broker-up
	$(VENV_PY) -m examples.aggregator

bench-limit: venv broker-up
	$(VENV_PY) bench/kafka_limit.py

bench: venv broker-up
	$(VENV_PY) -m pip install -q --disable-pip-version-check -e '.[bench]'
	$(VENV_PY) bench/orchestrations.py

bench-entities: venv broker-up
	$(VENV_PY) bench/entities.py

bench-latency: venv broker-up
	$(VENV_PY) bench/latency_breakdown.py

# Pause after kill -9 + restart, with and without static group membership (same run, same broker).
bench-recovery: venv broker-up
	$(VENV_PY) bench/recovery_pause.py

# What one Kafka transaction costs per partition it writes (the floor under every processor step).
bench-txn: venv broker-up
	$(VENV_PY) bench/txn_partitions.py $(BENCH_ARGS)

# Restore of a wiped worker, per-event history against one batch per step, in one run (D20).
bench-restore: venv broker-up
	$(VENV_PY) bench/restore.py $(BENCH_ARGS)

# Trigger routes against the Python client in one run (docs/PERFORMANCE.md); BENCH_ARGS e.g. --count 5000.
BENCH_ARGS ?=
bench-triggers: venv broker-up
	$(VENV_PY) bench/triggers.py $(BENCH_ARGS)

# The codec's generated Avro writers/readers against fastavro, CPU per call (no broker needed).
bench-codec: venv
	$(VENV_PY) bench/codec.py

# 5 MB payloads through the engine against plain produce/consume of the same bytes (docs/PERFORMANCE.md)
bench-payloads: venv broker-up
	$(VENV_PY) bench/payloads.py $(BENCH_ARGS)

# The worked example of issue 7: a faust service, trigger routes, an orchestration, an entity, results out.
orders: venv broker-up
	$(VENV_PY) -m examples.orders
