"""kill -9 of the worker in the middle of a signalling run: the counter still ends exactly right.

The worker runs in a subprocess (``python -m durable_kafka worker
tests.integration.test_entities_crash:make_worker``) and is SIGKILLed while signals are being
applied; signals keep arriving while it is down. The restarted worker either keeps its local
RocksDB (it lags the changelog at most) or starts with it deleted (rebuilt from the changelog).
Either way every signal is applied exactly once: the count is exact and the entity's history
on ``<hub>.history`` has no duplicate and no gap.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from durable_kafka import Client, Worker
from durable_kafka.entities import EntityContext
from durable_kafka.connectors.audit import read_topic
from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import Codec

try:
    from sizes import sized  # tests/ is on sys.path under pytest (rootdir conftest)
except ImportError:  # the worker subprocess imports this module (make_worker) from the repository root
    from tests.sizes import sized

ROOT = Path(__file__).resolve().parents[2]
N = sized(1000, 400)  # signals: 1,000 at full size (make chaos)
ENTITY = "@counter@crash"


def counter(ctx: EntityContext, input):
    if ctx.operation == "add":
        time.sleep(0.002)  # slow enough that the kill lands mid-run
        ctx.set_state(ctx.get_state(int, 0) + input)


def make_worker() -> Worker:
    w = Worker(os.environ["DURABLE_KAFKA_BOOTSTRAP"], hub=os.environ["DK_CRASH_HUB"],
               state_dir=os.environ["DK_CRASH_STATE"], partitions=int(os.environ["DK_CRASH_PARTITIONS"]))
    w.add_entity(counter)
    return w


def _spawn(hub, state: Path) -> subprocess.Popen:
    env = {**os.environ, "DURABLE_KAFKA_BOOTSTRAP": hub.bootstrap, "DK_CRASH_HUB": hub.name,
           "DK_CRASH_STATE": str(state), "DK_CRASH_PARTITIONS": str(hub.partitions)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "durable_kafka", "worker", "tests.integration.test_entities_crash:make_worker"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    assert "running" in line, f"worker did not start: {line}{proc.stdout.read() if proc.poll() is not None else ''}"
    return proc


def _send_paced(client: Client, killed: threading.Event) -> None:
    """N signals, paced; the last fifth waits for the kill if it has not happened yet, so signals
    keep arriving while the worker is down whatever the size and the machine's speed."""
    for i in range(N):
        if i == N * 4 // 5:
            client.flush()
            killed.wait(120)
        client.signal_entity(ENTITY, "add", 1, wait_for_delivery=(i % 100 == 99))
        time.sleep(0.003)


def _count(client: Client) -> int:
    meta = client.get_entity(ENTITY)
    return 0 if meta is None else meta.get_state(int)


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.parametrize("wipe_state", [False, True], ids=["keep-state", "wipe-state"])
def test_kill_9_mid_signalling_keeps_the_exact_count(hub, tmp_path, wipe_state):
    state = tmp_path / "worker-state"
    worker = _spawn(hub, state)
    try:
        with Client(hub.bootstrap, hub=hub.name) as client:
            killed = threading.Event()
            sender = threading.Thread(target=_send_paced, args=(client, killed), daemon=True)
            sender.start()  # keeps sending while the worker is killed and restarted
            deadline = time.monotonic() + 60
            while _count(client) < 150:
                assert time.monotonic() < deadline, "no progress before the kill"
                time.sleep(0.02)
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            killed.set()
            at_kill = _count(client)
            assert at_kill < N, "everything was applied before the kill; the test proves nothing"
            if wipe_state:
                shutil.rmtree(state)
            worker = _spawn(hub, state)
            sender.join(120)
            deadline = time.monotonic() + 120
            while (n := _count(client)) < N:
                assert time.monotonic() < deadline, f"stuck at {n}"
                time.sleep(0.2)
            time.sleep(1.0)
            assert _count(client) == N
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    _assert_history_exactly_once(hub)


def _assert_history_exactly_once(hub) -> None:
    records = [r for _, v in read_topic(hub.bootstrap, hub.topics.history, Codec.default()) for r in ev.history_records(v)]
    mine = [r for r in records if r.instance_id == ENTITY]
    assert len({r.id for r in mine}) == len(mine), "duplicated history records"
    assert [r.index for r in mine] == list(range(len(mine))), "gaps or reordering in the entity's history"
    kinds = Counter(type(r.event).__name__ for r in mine)
    assert kinds == {"EntityOperationSignaled": N, "EntityOperationCompleted": N}
