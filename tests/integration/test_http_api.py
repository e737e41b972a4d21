"""The HTTP management API: every route's success and error codes, against `durable-kafka serve`
(a real uvicorn in a subprocess) on the real broker with a real Worker, driven by httpx."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from types import SimpleNamespace

import httpx
import pytest

from durable_kafka import Client, OrchestrationQuery, OrchestrationStatus
from durable_kafka.streams.admin import delete_hub, ensure_topics

from client_app import make_worker  # tests/integration is on sys.path (rootdir-style tests)
from conftest import unique_hub_name
from http_server import serve

API = "/runtime/webhooks/durabletask"
KEY = "s3cret-key"
PAYLOAD_KEYS = {"id", "statusQueryGetUri", "sendEventPostUri", "terminatePostUri", "suspendPostUri",
                "resumePostUri", "rewindPostUri", "restartPostUri", "purgeHistoryDeleteUri"}


@pytest.fixture(scope="module")
def hub(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """One hub and one Worker for the module (servers are slow to start on a busy machine)."""
    test_hub = SimpleNamespace(name=unique_hub_name("h"), bootstrap=bootstrap, partitions=4)
    ensure_topics(test_hub.name, partitions=4, bootstrap=bootstrap)
    try:
        with make_worker(test_hub, str(tmp_path_factory.mktemp("state"))):
            yield test_hub
    finally:
        delete_hub(test_hub.name, bootstrap=bootstrap)


@pytest.fixture(scope="module")
def http(hub: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with serve(hub.name, hub.bootstrap, tmp_path_factory.mktemp("logs")) as base, \
            httpx.Client(base_url=base, timeout=90) as client:
        yield client


@pytest.fixture(scope="module")
def secured(hub: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with serve(hub.name, hub.bootstrap, tmp_path_factory.mktemp("logs"), "--api-key", KEY) as base, \
            httpx.Client(base_url=base, timeout=90) as client:
        yield client


def start(http: httpx.Client, name: str, body: object = None, instance_id: str | None = None, **kw) -> dict:
    path = f"{API}/orchestrators/{name}" + (f"/{instance_id}" if instance_id else "")
    response = http.post(path, json=body, **kw)
    assert response.status_code == 202, response.text
    payload = response.json()
    assert set(payload) == PAYLOAD_KEYS
    assert response.headers["location"] == payload["statusQueryGetUri"]
    return payload


def wait_status(http: httpx.Client, instance_id: str, status: str) -> dict:
    deadline = time.monotonic() + 60
    while (body := http.get(f"{API}/instances/{instance_id}").json())["runtimeStatus"] != status:
        assert time.monotonic() < deadline, body
        time.sleep(0.1)
    return body


# ---------------------------------------------------------------------------- start, status, long poll


def test_start_then_follow_the_check_status_uris(http: httpx.Client) -> None:
    payload = start(http, "hello_sequence")
    done = http.get(payload["statusQueryGetUri"], params={"waitForCompletion": "60s"})
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["runtimeStatus"] == "Completed" and body["name"] == "hello_sequence"
    assert body["output"] == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
    assert body["instanceId"] == payload["id"] and body["createdTime"].endswith("Z")
    assert "historyEvents" not in body

    history = http.get(payload["statusQueryGetUri"], params={"showHistory": "true"}).json()["historyEvents"]
    completed = [e for e in history if e["EventType"] == "TaskCompleted"]
    assert len(completed) == 3 and "Result" not in completed[0]
    with_output = http.get(payload["statusQueryGetUri"],
                           params={"showHistory": "true", "showHistoryOutput": "true"}).json()["historyEvents"]
    assert [e["Result"] for e in with_output if e["EventType"] == "TaskCompleted"][0] == "Hello Tokyo!"

    purged = http.delete(payload["purgeHistoryDeleteUri"])
    assert purged.status_code == 200 and purged.json() == {"instancesDeleted": 1}
    assert http.get(payload["statusQueryGetUri"]).status_code == 404
    assert http.delete(payload["purgeHistoryDeleteUri"]).status_code == 404


def test_running_instance_events_and_long_poll(http: httpx.Client) -> None:
    payload = start(http, "approval", {"order": 7}, instance_id="appr-1")
    assert payload["id"] == "appr-1"
    assert http.post(f"{API}/orchestrators/approval/appr-1", json=None).status_code == 409
    running = http.get(payload["statusQueryGetUri"], params={"waitForCompletion": "500ms"})
    assert running.status_code == 202 and running.headers["location"] == payload["statusQueryGetUri"]
    assert running.json()["input"] == {"order": 7}
    assert running.json()["runtimeStatus"] in ("Pending", "Running")
    assert http.get(payload["statusQueryGetUri"], params={"showInput": "false"}).json()["input"] is None

    assert http.post(payload["sendEventPostUri"].replace("{eventName}", "Approval"),
                     content=b"{not json").status_code == 400
    sent = http.post(payload["sendEventPostUri"].replace("{eventName}", "Approval"), json={"by": "ann"})
    assert sent.status_code == 202
    done = http.get(payload["statusQueryGetUri"], params={"waitForCompletion": "60"})
    assert done.status_code == 200 and done.json()["output"] == {"approved": {"by": "ann"}}
    assert done.json()["customStatus"] == {"stage": "waiting"}

    assert http.post(f"{API}/instances/appr-1/raiseEvent/Approval", json=1).status_code == 410
    assert http.post(f"{API}/instances/appr-1/terminate").status_code == 410
    assert http.post(f"{API}/instances/appr-1/suspend").status_code == 410
    assert http.post(f"{API}/instances/nobody/raiseEvent/Approval", json=1).status_code == 404
    assert http.get(f"{API}/instances/nobody").status_code == 404


def test_failed_instance_and_internal_server_error_on_request(http: httpx.Client) -> None:
    payload = start(http, "boom", "it broke")
    failed = http.get(payload["statusQueryGetUri"], params={"waitForCompletion": "60s"})
    assert failed.status_code == 200 and failed.json()["runtimeStatus"] == "Failed"
    assert "it broke" in failed.json()["output"]
    assert failed.json()["failureDetails"]["errorType"].endswith("ValueError")
    asked = http.get(payload["statusQueryGetUri"], params={"returnInternalServerErrorOnFailure": "true"})
    assert asked.status_code == 500 and asked.json()["runtimeStatus"] == "Failed"
    # rewind: the orchestrator itself raises, so it runs again from its history and fails again;
    # the history shows the rewind between the two failures
    assert http.post(payload["rewindPostUri"].replace("{text}", "fixed")).status_code == 202
    history = http.get(payload["statusQueryGetUri"], params={"showHistory": "true"}).json()["historyEvents"]
    kinds = [e.get("EventType") or e.get("eventType") or e.get("type") for e in history]
    assert "ExecutionRewound" in kinds, kinds
    again = http.get(payload["statusQueryGetUri"], params={"waitForCompletion": "60s"}).json()
    assert again["runtimeStatus"] == "Failed" and "it broke" in again["output"]


def test_suspend_resume_terminate_restart_rewind(http: httpx.Client) -> None:
    payload = start(http, "approval", None, instance_id="ctl-1")
    wait_status(http, "ctl-1", "Running")
    assert http.post(payload["resumePostUri"].replace("{text}", "nothing")).status_code == 410
    assert http.delete(payload["purgeHistoryDeleteUri"]).status_code == 409
    assert http.post(payload["suspendPostUri"].replace("{text}", "hold")).status_code == 202
    wait_status(http, "ctl-1", "Suspended")
    assert http.post(payload["resumePostUri"].replace("{text}", "go")).status_code == 202
    wait_status(http, "ctl-1", "Running")
    assert http.post(payload["terminatePostUri"].replace("{text}", "enough")).status_code == 202
    ended = http.get(payload["statusQueryGetUri"], params={"waitForCompletion": "60s"}).json()
    assert ended["runtimeStatus"] == "Terminated" and ended["output"] == "enough"

    rewind = http.post(payload["rewindPostUri"].replace("{text}", "again"))
    assert rewind.status_code == 410 and "only a failed instance" in rewind.json()["error"]  # terminated
    assert http.post(f"{API}/instances/nobody/rewind").status_code == 404
    same = http.post(payload["restartPostUri"])
    assert same.status_code == 202 and same.json()["id"] == "ctl-1"
    wait_status(http, "ctl-1", "Running")
    assert http.post(payload["restartPostUri"]).status_code == 409  # running again: same id refused
    fresh = http.post(payload["restartPostUri"], params={"restartWithNewInstanceId": "true"})
    assert fresh.status_code == 202 and fresh.json()["id"] != "ctl-1"
    assert http.post(f"{API}/instances/nobody/restart").status_code == 404
    assert http.post(f"{API}/instances/nobody/terminate").status_code == 404
    for instance_id in ("ctl-1", fresh.json()["id"]):
        assert http.post(f"{API}/instances/{instance_id}/terminate").status_code == 202


# ---------------------------------------------------------------------------- list, paging, purge by filter


def test_list_pages_over_250_instances_then_purge_by_filter(http: httpx.Client, hub: SimpleNamespace) -> None:
    since = datetime.now(timezone.utc)
    with Client(hub.bootstrap, hub=hub.name) as client:
        for i in range(250):
            client.schedule_new_orchestration("echo", input=i, instance_id=f"page-{i:03}", wait_for_acceptance=False)
        client.flush()
        deadline = time.monotonic() + 180
        query = OrchestrationQuery(instance_id_prefix="page-", runtime_status=[OrchestrationStatus.COMPLETED])
        while len(client.get_all_orchestration_states(query)) < 250:
            assert time.monotonic() < deadline
            time.sleep(0.5)

    seen: list[str] = []
    token = None
    pages = 0
    while True:
        response = http.get(f"{API}/instances", params={"instanceIdPrefix": "page-", "top": "100",
                                                        "showInput": "true"},
                            headers={"x-ms-continuation-token": token} if token else {})
        assert response.status_code == 200, response.text
        seen.extend(item["instanceId"] for item in response.json())
        pages += 1
        token = response.headers.get("x-ms-continuation-token")
        if token is None:
            break
    assert pages == 3 and sorted(seen) == [f"page-{i:03}" for i in range(250)] and len(set(seen)) == 250
    first = http.get(f"{API}/instances", params={"instanceIdPrefix": "page-00", "showInput": "true"}).json()
    assert {item["input"] for item in first} == set(range(10))
    assert http.get(f"{API}/instances", params={"instanceIdPrefix": "page-", "runtimeStatus": "Running,Failed"}
                    ).json() == []
    assert len(http.get(f"{API}/instances", params={"instanceIdPrefix": "page-", "runtimeStatus": "completed",
                                                    "createdTimeFrom": since.isoformat(), "top": "300"}).json()) == 250
    for bad in ({"runtimeStatus": "Bogus"}, {"top": "0"}, {"createdTimeFrom": "yesterday"}, {"showInput": "maybe"}):
        response = http.get(f"{API}/instances", params=bad)
        assert response.status_code == 400 and response.json()["error"], bad
    assert http.get(f"{API}/instances", headers={"x-ms-continuation-token": "garbage"}).status_code == 400

    assert http.delete(f"{API}/instances").status_code == 400  # createdTimeFrom is required
    purged = http.delete(f"{API}/instances", params={"createdTimeFrom": since.isoformat(),
                                                     "runtimeStatus": "Completed"})
    assert purged.status_code == 200 and purged.json()["instancesDeleted"] == 250
    assert http.get(f"{API}/instances", params={"instanceIdPrefix": "page-"}).json() == []
    assert http.delete(f"{API}/instances", params={"createdTimeFrom": since.isoformat(),
                                                   "runtimeStatus": "Completed"}).status_code == 404


# ---------------------------------------------------------------------------- entities


def test_entities_signal_read_and_list(http: httpx.Client) -> None:
    for key, amount in (("e1", 5), ("e2", 7), ("e3", 1)):
        assert http.post(f"{API}/entities/counter/{key}", params={"op": "add"}, json=amount).status_code == 202
    assert http.post(f"{API}/entities/counter/e1", json=1).status_code == 400  # op is required
    assert http.post(f"{API}/entities/counter/e1", params={"op": "add"}, content=b"{").status_code == 400
    assert http.post(f"{API}/entities/bad@name/e1", params={"op": "add"}, json=1).status_code == 400
    deadline = time.monotonic() + 60
    while (got := http.get(f"{API}/entities/counter/e3")).status_code == 404:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert got.status_code == 200 and got.json() == 1
    assert http.get(f"{API}/entities/counter/e1").json() == 5
    assert http.get(f"{API}/entities/counter/nothing").status_code == 404

    page = http.get(f"{API}/entities/counter", params={"top": "2", "fetchState": "true"})
    assert [item["entityId"]["key"] for item in page.json()] == ["e1", "e2"]
    assert [item["state"] for item in page.json()] == [5, 7]
    rest = http.get(f"{API}/entities/counter", headers={"x-ms-continuation-token": page.headers["x-ms-continuation-token"]})
    assert [item["entityId"] for item in rest.json()] == [{"name": "counter", "key": "e3"}]
    assert "state" not in rest.json()[0] and "x-ms-continuation-token" not in rest.headers


# ---------------------------------------------------------------------------- limits and validation


def test_bodies_ids_and_values_are_checked(http: httpx.Client) -> None:
    big = b"[" + b"1," * (512 * 1024) + b"1]"  # just over 1 MiB
    assert http.post(f"{API}/orchestrators/echo", content=big).status_code == 413

    def chunks():  # no Content-Length: the limit applies while the body streams in
        for _ in range(17):
            yield b" " * 65536

    assert http.post(f"{API}/orchestrators/echo", content=chunks()).status_code == 413
    malformed = http.post(f"{API}/orchestrators/echo", content=b'{"a": ')
    assert malformed.status_code == 400 and "not valid JSON" in malformed.json()["error"]
    too_long = http.post(f"{API}/orchestrators/echo/{'x' * 300}", json=1)
    assert too_long.status_code == 400 and "instance id" in too_long.json()["error"]
    assert http.get(f"{API}/instances/x", params={"waitForCompletion": "soon"}).status_code == 400
    other_hub = http.get(f"{API}/instances", params={"taskHub": "someone-else"})
    assert other_hub.status_code == 400 and "task hub" in other_hub.json()["error"]
    assert http.get("/openapi.json").json()["paths"][f"{API}/instances/{{instance_id}}"]
    assert http.get("/docs").status_code == 200
    assert http.get("/healthz").json()["status"] == "ok"


# ---------------------------------------------------------------------------- security


def test_api_key_by_code_or_bearer(secured: httpx.Client) -> None:
    assert secured.post(f"{API}/orchestrators/approval/nokey-1", json=1).status_code == 401
    assert secured.post(f"{API}/orchestrators/approval/nokey-1", json=1, params={"code": "wrong"}).status_code == 401
    assert secured.post(f"{API}/orchestrators/approval/nokey-1", json=1,
                        headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert secured.get(f"{API}/instances/nokey-1", params={"code": KEY}).status_code == 404  # nothing happened
    assert secured.get("/healthz").status_code == 200

    payload = start(secured, "approval", None, instance_id="key-1", params={"code": KEY})
    assert f"code={KEY}" in payload["statusQueryGetUri"]
    followed = secured.post(payload["terminatePostUri"].replace("{text}", "bye"))  # the URI carries the key
    assert followed.status_code == 202
    bearer = {"Authorization": f"Bearer {KEY}"}
    done = secured.get(f"{API}/instances/key-1", params={"waitForCompletion": "60s"}, headers=bearer)
    assert done.status_code == 200 and done.json()["runtimeStatus"] == "Terminated"
    by_header = start(secured, "echo", 3, headers=bearer)
    assert KEY not in by_header["statusQueryGetUri"]


def test_serve_refuses_a_public_bind_without_a_key(hub: SimpleNamespace) -> None:
    result = subprocess.run([sys.executable, "-m", "durable_kafka", "serve", "--hub", hub.name, "--host", "0.0.0.0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "API key" in result.stderr


def test_healthz_reports_a_hub_without_topics(bootstrap: str, tmp_path) -> None:
    with serve(unique_hub_name("missing"), bootstrap, tmp_path) as base:
        response = httpx.get(f"{base}/healthz", timeout=30)
    assert response.status_code == 503 and response.json()["status"] == "unavailable"
