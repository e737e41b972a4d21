"""The CLI's long operations: a progress bar on a terminal (a pty here), nothing extra when piped."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from durable_kafka import Client, Worker
from durable_kafka.streams.admin import delete_hub

from conftest import unique_hub_name
from tracing_app import hello_sequence5, say_hello

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _env(bootstrap: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DURABLE_KAFKA_PROGRESS"}
    return {**env, "DURABLE_KAFKA_BOOTSTRAP": bootstrap}


def _on_a_terminal(args: list[str], bootstrap: str) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pty (a person's terminal); stdout piped. Returns (rc, stdout, stderr)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "durable_kafka", *args], cwd=ROOT, env=_env(bootstrap),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    out = proc.stdout.read().decode()
    rc = proc.wait(120)
    os.close(master)
    return rc, out, b"".join(chunks).decode("utf-8", "replace")


def _piped(args: list[str], bootstrap: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "durable_kafka", *args], cwd=ROOT, env=_env(bootstrap),
                          capture_output=True, text=True, timeout=120)


def test_topic_creation_audit_and_purge_show_progress_on_a_terminal_only(bootstrap, tmp_path):
    hubs = [unique_hub_name("p") for _ in range(3)]
    try:
        create = ["topics", "create", "--partitions", "2"]
        for h in hubs[:2]:
            create += ["--hub", h]
        rc, out, err = _on_a_terminal(create, bootstrap)
        assert rc == 0, err
        assert "creating topics" in err and "2/2" in err  # the bar, on the terminal
        assert f"created 11 topics for hub {hubs[0]!r}:" in out and f"created 11 topics for hub {hubs[1]!r}:" in out
        piped = _piped(["topics", "create", "--partitions", "2", "--hub", hubs[2], "--hub", hubs[0]], bootstrap)
        assert piped.returncode == 0 and piped.stderr == ""  # piped: no bar, no escape codes
        assert piped.stdout.splitlines()[0] == f"created 11 topics for hub {hubs[2]!r}:"
        assert f"all topics of hub {hubs[0]!r} already exist" in piped.stdout

        worker = Worker(bootstrap, hub=hubs[0], state_dir=str(tmp_path / "state"), partitions=2)
        worker.add_orchestrator(hello_sequence5)
        worker.add_activity(say_hello)
        with worker, Client(bootstrap, hub=hubs[0]) as client:  # instances to read and purge (a worker purges)
            ids = [client.schedule_new_orchestration(hello_sequence5, instance_id=f"p-{n}") for n in range(4)]
            for iid in ids:
                assert client.wait_for_orchestration_completion(iid, timeout=60).get_output() is not None
            rc, out, err = _on_a_terminal(["audit", "--hub", hubs[0]], bootstrap)
            assert rc == 0, err
            assert "reading " in err and "offsets" in err and out.endswith("audit: OK\n")
            piped = _piped(["audit", "--hub", hubs[0]], bootstrap)
            assert piped.returncode == 0 and piped.stderr == "" and piped.stdout == out  # same lines, no bar

            purge = ["purge-by-filter", "--hub", hubs[0], "--created-from", "2000-01-01T00:00:00+00:00"]
            rc, out, err = _on_a_terminal([*purge, "--prefix", "p-0"], bootstrap)
            assert rc == 0, err
            assert "purging" in err and "1/1" in err and out == "purged 1 of 1 matching instances\n"
            piped = _piped(purge, bootstrap)
            assert piped.returncode == 0 and piped.stderr == ""
            assert piped.stdout == "purged 3 of 3 matching instances\n"
    finally:
        for h in hubs:
            delete_hub(h, bootstrap=bootstrap)
