# durable-kafka developer tasks. `make test` is the one command: it makes the venv, starts the
# local Kafka broker (assembled from Maven Central on first use) and runs the whole suite.
#
#   make venv          .venv with the project installed editable (+ dev extras), only when needed
#   make broker-up     start (or find) the local broker on 127.0.0.1:9092, state in .state/kafka
#   make broker-down   stop it
#   make broker-status
#   make cluster-up    start (or find) three KRaft nodes on 127.0.0.1:9292-9294 (controllers
#                      9295-9297), state in .state/cluster; replication factor 3, min ISR 2
#   make cluster-down  stop them (the cluster tests in `make test` start it when needed)
#   make cluster-status
#   make chaos         the full broker-failure tests on the cluster (tests/chaos, minutes)
#   make test          venv + broker-up + the whole pytest suite (its cluster tests start the cluster)
#   make test-unit     the tests that need no broker
#   make clean-state   stop the broker and delete its state (topics, offsets, cluster id)

PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.durable-kafka-installed
STATE_DIR := .state
KAFKA_PORT ?= 9092
KAFKA_CONTROLLER_PORT ?= 9093
BROKER := $(VENV_PY) -m durable_kafka.connectors.broker
BROKER_ARGS := --port $(KAFKA_PORT) --controller-port $(KAFKA_CONTROLLER_PORT) --state-dir $(STATE_DIR)/kafka
PYTEST_ARGS ?=
CLUSTER_BASE_PORT ?= 9292
CLUSTER := $(VENV_PY) -m durable_kafka.connectors.cluster
CLUSTER_ARGS := --base-port $(CLUSTER_BASE_PORT) --state-dir $(STATE_DIR)/cluster

export DURABLE_KAFKA_BOOTSTRAP ?= 127.0.0.1:$(KAFKA_PORT)
export DURABLE_KAFKA_CLUSTER_BASE_PORT := $(CLUSTER_BASE_PORT)

.PHONY: venv broker-up broker-down broker-status cluster-up cluster-down cluster-status test test-unit \
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

# pytest's exit status is kept in .state/pytest.rc for .ci/run; 5 (no tests collected) fails.
test: venv broker-up
	@mkdir -p $(STATE_DIR)
	@$(VENV_PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; echo $$rc > $(STATE_DIR)/pytest.rc; \
		if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; fi; \
		exit $$rc

test-unit: venv
	$(VENV_PY) -m pytest -q -m 'not integration' $(PYTEST_ARGS)

# The full chaos runs (kill -9 of the busiest leader, of the active controller, a rolling
# restart) under continuous load; the cluster is left running for the next run.
chaos: venv cluster-up
	$(VENV_PY) -m pytest -q -s --chaos tests/chaos $(PYTEST_ARGS)

clean-state: broker-down
	rm -rf $(STATE_DIR)/kafka

# ---- demo and benchmark targets go below this line ------------------------------------------

TIMER_SECONDS ?= 3

.PHONY: demo aggregator bench bench-limit bench-entities bench-latency

# The main job: broker up, a real worker in this process, the seed's orchestration end to end.
demo: venv broker-up
	$(VENV_PY) -m examples.demo --timer-seconds $(TIMER_SECONDS)

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
