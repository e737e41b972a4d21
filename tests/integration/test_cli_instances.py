"""The CLI's instance and entity commands through their entry point (``durable_kafka.__main__.main``
and one real ``python -m durable_kafka`` run), on the real broker with a real Worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from durable_kafka import Client, OrchestrationStatus
from durable_kafka.__main__ import main

from client_app import make_worker  # tests/integration is on sys.path (rootdir-style tests)


@pytest.fixture
def cli(hub, tmp_path, capsys):
    """``cli(*argv) -> (exit code, stdout)`` with ``--hub`` and the test broker filled in."""
    with make_worker(hub, str(tmp_path / "state")), Client(hub.bootstrap, hub=hub.name) as client:
        def run(*argv: str) -> tuple[int, str]:
            code = main([*argv, "--hub", hub.name, "--bootstrap", hub.bootstrap])
            out, err = capsys.readouterr()
            return code, out + err
        run.client = client
        yield run


def test_start_show_list_and_history(cli) -> None:
    code, out = cli("start", "hello_sequence", "--id", "cli-1", "--wait", "60")
    assert code == 0 and "Completed" in out and "Hello Tokyo!" in out
    code, out = cli("instances", "show", "cli-1", "--history")
    assert code == 0 and "runtimeStatus:   Completed" in out
    assert "ExecutionStarted" in out and out.count("TaskCompleted") == 3 and "Result=\"Hello London!\"" in out
    code, out = cli("instances", "show", "cli-1", "--json")
    assert json.loads(out)["output"] == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]

    code, out = cli("start", "echo", "--input", '{"a": 1}', "--json")
    assert code == 0
    started = json.loads(out)["id"]
    cli.client.wait_for_orchestration_completion(started, timeout=60)
    code, out = cli("instances", "list", "--status", "Completed", "--json")
    assert {item["instanceId"] for item in json.loads(out)} == {"cli-1", started}
    code, out = cli("instances", "list", "--prefix", "cli-")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["instance", "id", "name"] and "cli-1" in lines[2] and len(lines) == 3

    assert cli("start", "echo", "--input", "{bad")[0] == 1
    code, out = cli("instances", "show", "nobody")
    assert code == 1 and "does not exist" in out


def test_raise_suspend_resume_terminate_restart_purge(cli) -> None:
    assert cli("start", "approval", "--id", "cli-2")[0] == 0
    cli.client.wait_for_orchestration_start("cli-2", timeout=60)
    assert cli("suspend", "cli-2", "--reason", "hold")[0] == 0
    wait_for(cli.client, "cli-2", OrchestrationStatus.SUSPENDED)
    assert cli("resume", "cli-2")[0] == 0
    wait_for(cli.client, "cli-2", OrchestrationStatus.RUNNING)
    code, out = cli("raise", "cli-2", "Approval", "--data", '"ok"')
    assert code == 0 and "event sent: cli-2" in out
    assert cli.client.wait_for_orchestration_completion("cli-2", timeout=60).get_output() == {"approved": "ok"}

    code, out = cli("restart", "cli-2", "--new-id", "--json")
    new_id = json.loads(out)["result"]
    assert code == 0 and new_id != "cli-2"
    cli.client.wait_for_orchestration_start(new_id, timeout=60)
    assert cli("terminate", new_id, "--reason", "stop")[0] == 0
    assert cli.client.wait_for_orchestration_completion(new_id, timeout=60).get_output() == "stop"
    code, out = cli("purge", "cli-2")
    assert code == 0 and "purged: cli-2 -> 1" in out
    assert cli.client.get_orchestration_state("cli-2") is None
    assert cli("terminate", "cli-2")[0] == 1


def test_start_with_a_version_and_rewind(cli) -> None:
    code, out = cli("start", "boom", "--id", "cli-3", "--input", '"broken"', "--version", "2.1", "--wait", "60")
    assert code == 0 and "Failed" in out and "version:         2.1" in out
    code, out = cli("rewind", "cli-3", "--reason", "try again")  # the code raises again: failed again
    assert code == 0 and "rewound: cli-3" in out
    code, out = cli("instances", "show", "cli-3", "--history")
    assert "ExecutionRewound" in out and "try again" in out
    code, out = cli("instances", "list", "--prefix", "cli-3")
    assert "2.1" in out.splitlines()[2]
    assert cli("start", "echo", "--id", "cli-4", "--input", "1", "--wait", "60")[0] == 0
    code, out = cli("rewind", "cli-4")
    assert code == 1 and "only a failed instance can be rewound" in out


def test_entities_signal_show_list(cli) -> None:
    assert cli("entities", "signal", "@counter@c1", "add", "--input", "4")[0] == 0
    deadline = time.monotonic() + 60
    while cli.client.get_entity("@counter@c1") is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    code, out = cli("entities", "show", "@counter@c1", "--json")
    assert code == 0 and json.loads(out)["state"] == 4
    code, out = cli("entities", "list", "--name", "counter")
    assert "@counter@c1" in out and out.splitlines()[0].startswith("entity")
    assert cli("entities", "show", "@counter@none")[0] == 1


def test_the_installed_entry_point_runs(hub) -> None:
    result = subprocess.run([sys.executable, "-m", "durable_kafka", "instances", "list", "--hub", hub.name, "--json"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "DURABLE_KAFKA_BOOTSTRAP": hub.bootstrap})
    assert result.returncode == 0 and json.loads(result.stdout) == []


def wait_for(client: Client, instance_id: str, status: OrchestrationStatus) -> None:
    deadline = time.monotonic() + 60
    while client.get_orchestration_state(instance_id).runtime_status != status:
        assert time.monotonic() < deadline
        time.sleep(0.1)
