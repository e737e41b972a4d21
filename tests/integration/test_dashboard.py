"""The web dashboard in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright,
against `durable-kafka serve` (with an API key) on the real broker, with a real Worker and real
instances. Set DASHBOARD_SCREENSHOTS=1 to write a screenshot of each page to docs/img/.

Skips only when no Chromium executable is found (CHROMIUM, or `chromium` on PATH); `.ci/run`
installs Debian's package, so CI always runs these.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer

from durable_kafka import Client, OrchestrationStatus
from durable_kafka.streams.admin import delete_hub, ensure_topics

from conftest import unique_hub_name  # tests/integration is on sys.path (rootdir-style tests)
from dashboard_app import make_worker
from http_server import serve

pytestmark = pytest.mark.integration

KEY = "dash-key"
API = "/runtime/webhooks/durabletask"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "img"
WAIT_MS = 60_000  # how long a page may take to show what the broker already holds (busy CI machine)


def chromium_path() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium found (set CHROMIUM or `apt-get install chromium`; .ci/run installs it)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def hub(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """A hub with a worker, the server (API key required) and instances of every kind."""
    test_hub = SimpleNamespace(name=unique_hub_name("d"), bootstrap=bootstrap, partitions=4)
    ensure_topics(test_hub.name, partitions=4, bootstrap=bootstrap)
    try:
        with make_worker(test_hub, str(tmp_path_factory.mktemp("state"))) as worker, \
                serve(test_hub.name, bootstrap, tmp_path_factory.mktemp("logs"), "--api-key", KEY) as base, \
                Client(bootstrap, hub=test_hub.name) as client:
            test_hub.base = base
            test_hub.client = client
            test_hub.worker_id = worker.worker_id
            populate(test_hub, client)
            yield test_hub
    finally:
        delete_hub(test_hub.name, bootstrap=bootstrap)


def populate(hub: SimpleNamespace, client: Client) -> None:
    """120 quick instances (paging), an order waiting for approval (its child completes), a failure,
    entities, a dead letter."""
    ids = [client.schedule_new_orchestration("echo", input=i, instance_id=f"echo-{i:03d}", wait_for_acceptance=False)
           for i in range(120)]
    client.schedule_new_orchestration("process_order", input={"id": 42, "skus": ["apple", "pear", "fig"]},
                                      instance_id="order-42")
    client.schedule_new_orchestration("check_payment", input=7, instance_id="payment-7")
    for key, amount in (("apples", 3), ("pears", 5), ("apples", 4)):
        client.signal_entity(f"@counter@{key}", "add", amount)
    producer = Producer({"bootstrap.servers": hub.bootstrap})
    producer.produce(f"{hub.name}.orchestrator-events", key=b"garbage-1", value=b"\x00not avro")
    producer.flush(30)
    for iid in ids:
        client.wait_for_orchestration_completion(iid, timeout=120)
    client.wait_for_orchestration_completion("payment-7", timeout=120)
    deadline = time.monotonic() + 120
    while True:  # the order reaches its event wait (after the child), then the dashboard can show it
        state = client.get_orchestration_state("order-42")
        if state is not None and state.serialized_custom_status and "approval" in state.serialized_custom_status:
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.2)


@pytest.fixture
def page(browser: Any, hub: SimpleNamespace) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{hub.base}/?code={KEY}#/instances")
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page: Any, name: str, full_page: bool = True) -> None:
    if os.environ.get("DASHBOARD_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"dashboard-{name}.png"), full_page=full_page)


def count(page: Any, status: str) -> int:
    return int(page.locator(f'#counts .count[data-status="{status}"] b').inner_text())


def test_instances_filters_and_paging(page: Any) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#page-info")).to_have_text(re.compile(r"^1–50 of 12\d$"))
    assert count(page, "Completed") == 121 and count(page, "Failed") == 1 and count(page, "Running") >= 1
    assert page.locator("#instances tbody tr").count() == 50
    shot(page, "instances", full_page=False)

    page.click("#next")  # page 2 of the same filter
    expect(page.locator("#page-info")).to_have_text(re.compile(r"^51–100 of "))
    page.click("#prev")
    expect(page.locator("#page-info")).to_have_text(re.compile(r"^1–50 of "))

    page.click('#counts .count[data-status="Failed"]')  # the count doubles as a status filter
    expect(page.locator("#page-info")).to_have_text("1–1 of 1")
    expect(page.locator("#instances tbody tr")).to_have_count(1)
    expect(page.locator("#instances tbody")).to_contain_text("payment-7")

    page.click("#f-clear")
    expect(page.locator("#page-info")).to_have_text(re.compile(r"^1–50 of 12\d$"))
    page.fill("#f-prefix", "echo-11")
    page.click("#f-apply")
    expect(page.locator("#page-info")).to_have_text("1–10 of 10")
    created = page.locator("#instances tbody tr td:nth-child(4)").all_inner_texts()
    assert created == sorted(created, reverse=True) and len(created) == 10  # newest first

    page.fill("#f-prefix", "")
    page.fill("#f-name", "ORDER")  # name filter: case-insensitive substring
    page.click("#f-apply")
    expect(page.locator("#page-info")).to_have_text("1–1 of 1")
    expect(page.locator("#instances tbody")).to_contain_text("order-42")

    page.fill("#f-name", "")
    page.fill("#f-to", "2000-01-01T00:00")  # created before 2000: nothing
    page.click("#f-apply")
    expect(page.locator("#page-info")).to_have_text("0 of 0")
    assert "to=2000-01-01T00%3A00%3A00Z" in page.url or "to=2000-01-01T00:00:00Z" in page.url


def test_instance_timeline_and_raise_event(page: Any, hub: SimpleNamespace) -> None:
    from playwright.sync_api import expect

    page.goto(f"{hub.base}/?code={KEY}#/instance/order-42")
    expect(page.locator("#instance-id")).to_have_text("order-42")
    expect(page.locator("#status")).to_have_text("Running")
    expect(page.locator("#custom-status")).to_contain_text("awaiting approval")
    expect(page.locator("#input")).to_contain_text('"apple"')
    # the timeline: three activities fanned out, a timer, the child, and the wait for the event
    timeline = page.locator("#timeline")
    expect(timeline.locator('.tl-row[data-kind="activity"]')).to_have_count(3)
    expect(timeline.locator('.tl-row[data-kind="timer"]')).to_have_count(1)
    expect(timeline.locator('.tl-row[data-kind="suborchestration"]')).to_contain_text("ship")
    expect(timeline.locator('.tl-row[data-kind="waiting"] .tl-bar.pending')).to_have_count(1)
    starts = [float(re.search(r"left:\s*([\d.]+)%", s).group(1)) for s in
              timeline.locator('.tl-row[data-kind="activity"] .tl-bar').evaluate_all("els => els.map(e => e.style.cssText)")]
    timer_left = timeline.locator('.tl-row[data-kind="timer"] .tl-bar').evaluate("e => parseFloat(e.style.left)")
    assert max(starts) < timer_left  # fan-out first (side by side), then the timer
    expect(page.locator("#history")).to_contain_text("SubOrchestrationInstanceCreated")
    expect(page.locator("#act-purge")).to_be_disabled()  # still running
    shot(page, "instance", full_page=False)

    page.click("#act-raise")  # the JSON editor refuses invalid JSON
    page.fill("#act-event-name", "Approval")
    page.fill("#act-event-data", '{"by": ann}')
    expect(page.locator("#confirm-ok")).to_be_disabled()
    expect(page.locator("#confirm-error")).to_contain_text("not valid JSON")
    page.fill("#act-event-data", '{"by": "ann"}')
    expect(page.locator("#confirm-ok")).to_be_enabled()
    shot(page, "raise-event", full_page=False)
    page.click("#confirm-ok")
    expect(page.locator("#toast")).to_contain_text("Event Approval raised")

    expect(page.locator("#status")).to_have_text("Completed")  # auto-refresh shows the new state
    expect(page.locator("#output")).to_contain_text('"by": "ann"')
    expect(page.locator("#timeline .tl-row[data-kind=\"event\"]")).to_contain_text("Approval")
    expect(page.locator("#history")).to_contain_text("EventRaised")

    page.click('#timeline .tl-row[data-kind="suborchestration"] a')  # child link, and back to the parent
    expect(page.locator("#instance-id")).to_have_text("order-42:ship")
    page.click("#parent a")
    expect(page.locator("#instance-id")).to_have_text("order-42")


def test_failed_instance_shows_stack_trace_and_rewind_degrades(page: Any, hub: SimpleNamespace) -> None:
    from playwright.sync_api import expect

    page.goto(f"{hub.base}/?code={KEY}#/instance/payment-7")
    expect(page.locator("#status")).to_have_text("Failed")
    expect(page.locator("#failure")).to_contain_text("payment declined for order 7")
    expect(page.locator("#stack-trace")).to_contain_text("check_payment")
    shot(page, "failed")
    page.click("#act-rewind")
    page.click("#confirm-ok")
    rewind = httpx.post(f"{hub.base}{API}/instances/payment-7/rewind", params={"code": KEY})
    if rewind.status_code in (404, 405, 501):  # this build has no rewind: the page says so plainly
        expect(page.locator("#toast")).to_contain_text("Rewind is not available on this server")
    else:
        expect(page.locator("#toast")).to_contain_text("Rewind requested")

    page.click("#act-restart")  # restart with a new id: the page follows to the new instance
    page.check("#act-new-id")
    page.click("#confirm-ok")
    expect(page.locator("#instance-id")).not_to_have_text("payment-7")
    expect(page.locator("#input")).to_have_text("7")
    expect(page.locator("#status")).to_have_text("Failed")  # check_payment always fails


def test_commands_with_confirmation_suspend_resume_terminate_purge(page: Any, hub: SimpleNamespace) -> None:
    from playwright.sync_api import expect

    hub.client.schedule_new_orchestration("process_order", input={"id": 9, "skus": ["kiwi"]}, instance_id="order-9")
    hub.client.wait_for_orchestration_start("order-9", timeout=60)
    page.goto(f"{hub.base}/?code={KEY}#/instance/order-9")
    expect(page.locator("#instance-id")).to_have_text("order-9")
    page.click("#act-suspend")
    page.click("#confirm-cancel")  # cancelled: nothing happens
    expect(page.locator("#act-suspend")).to_be_enabled()
    assert hub.client.get_orchestration_state("order-9").runtime_status != OrchestrationStatus.SUSPENDED
    page.click("#act-suspend")
    page.fill("#act-reason", "maintenance")
    page.click("#confirm-ok")
    expect(page.locator("#status")).to_have_text("Suspended")
    page.click("#act-resume")
    page.click("#confirm-ok")
    expect(page.locator("#status")).to_have_text(re.compile("Running|Pending"))
    page.click("#act-terminate")
    page.fill("#act-reason", "cancelled by test")
    page.click("#confirm-ok")
    expect(page.locator("#status")).to_have_text("Terminated")
    expect(page.locator("#output")).to_contain_text("cancelled by test")
    page.click("#act-purge")
    page.click("#confirm-ok")
    expect(page.locator("#page-info")).to_be_visible()  # back on the list
    assert hub.client.get_orchestration_state("order-9") is None


def test_entities_list_state_and_signal(page: Any, hub: SimpleNamespace) -> None:
    from playwright.sync_api import expect

    page.click('nav a[data-nav="entities"]')
    expect(page.locator('#entity-names button[data-name="counter"]')).to_have_text("counter (2)")
    expect(page.locator('#entities tr[data-key="apples"] pre')).to_have_text("7")
    page.fill("#sig-name", "counter")
    page.fill("#sig-key", "pears")
    page.fill("#sig-op", "add")
    page.fill("#sig-input", "10")
    page.click("#sig-send")
    expect(page.locator("#toast")).to_contain_text("Signal add sent")
    page.click('#entity-names button[data-name="counter"]')
    expect(page.locator('#entities tr[data-key="pears"] pre')).to_have_text("15")  # refreshes until applied
    expect(page.locator('#entities tr[data-key="pears"] td').nth(2)).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d "))
    shot(page, "entities")


def test_hub_page_topics_lag_owners_and_dead_letters(page: Any, hub: SimpleNamespace) -> None:
    from playwright.sync_api import expect

    page.click('nav a[data-nav="hub"]')
    expect(page.locator("#topics")).to_contain_text(f"{hub.name}.orchestrator-events")
    expect(page.locator("#dead-letter-count")).to_have_text("1")
    expect(page.locator("#dead-letters")).to_contain_text("garbage")  # the reason names the bad record
    group = page.locator(f'.group[data-group="{hub.name}.orchestrators"]')
    expect(group).to_contain_text("STABLE")
    expect(group.locator("tbody tr")).to_have_count(4)
    owners = group.locator("tbody tr td:nth-child(3)").all_inner_texts()
    assert owners == [hub.worker_id] * 4  # every partition owned by the one worker, named by its id
    activity = page.locator(f'.group[data-group="{hub.name}.activity-workers"]')
    # the group reads the activity's own topic and the shared topic of releases before routing
    # (docs/ROUTING.md), 4 partitions each
    expect(activity.locator("tbody tr")).to_have_count(8)
    shot(page, "hub")


def test_the_page_asks_for_the_key(browser: Any, hub: SimpleNamespace) -> None:
    from playwright.sync_api import expect

    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.goto(f"{hub.base}/#/instances")  # no key in the URL: the data routes answer 401
    expect(page.locator("#login")).to_be_visible()
    page.fill("#login-key", KEY)
    page.click("#login-ok")
    expect(page.locator("#page-info")).to_have_text(re.compile(r"of \d+"))
    assert httpx.get(f"{hub.base}/dashboard/api/instances").status_code == 401
    assert httpx.get(f"{hub.base}/dashboard/static/app.js").status_code == 200
    context.close()


def test_dashboard_routes_check_their_arguments(hub: SimpleNamespace) -> None:
    """The JSON routes behind the page: the key, 400 with the parameter named, 404 unknown."""
    with httpx.Client(base_url=hub.base, timeout=90, headers={"Authorization": f"Bearer {KEY}"}) as http:
        assert httpx.get(f"{hub.base}/dashboard/api/hub").status_code == 401
        bad = http.get("/dashboard/api/instances", params={"limit": "501"})
        assert bad.status_code == 400 and "limit" in bad.json()["error"]
        assert http.get("/dashboard/api/instances", params={"status": "Sleeping"}).status_code == 400
        assert http.get("/dashboard/api/instances", params={"from": "yesterday"}).status_code == 400
        assert http.get("/dashboard/api/instances/nobody").status_code == 404
        page = http.get("/dashboard/api/instances", params={"prefix": "echo-00", "limit": 3, "offset": 3}).json()
        assert page["total"] == 10 and len(page["items"]) == 3 and page["counts"]["Completed"] == 10
        one = http.get("/dashboard/api/instances/order-42").json()
        assert one["children"][0]["instanceId"] == "order-42:ship" and one["timeline"]["bars"][0]["kind"] == "orchestration"
        assert http.get("/dashboard/api/instances/order-42:ship").json()["parentInstanceId"] == "order-42"
        assert http.get("/").text.count(hub.name) >= 2  # the page names its hub
        assert http.get("/dashboard/static/app.js").headers["content-type"].startswith(("text/javascript",
                                                                                          "application/javascript"))


def test_a_large_dead_letter_topic_is_counted_by_offsets(hub: SimpleNamespace) -> None:
    """Past max_counted offsets the count is the offset span (marked approximate) and only the
    partitions' tails are read, which still finds the latest letter."""
    from durable_kafka._dashboard_hub import latest_dead_letters
    from durable_kafka.streams.codec import Codec

    exact = latest_dead_letters(hub.bootstrap, None, hub.name, Codec.default())
    assert (exact["count"], exact["approximate"], exact["complete"]) == (1, False, True)
    rough = latest_dead_letters(hub.bootstrap, None, hub.name, Codec.default(), max_counted=0)
    assert rough["approximate"] and rough["count"] >= 1  # the span counts commit markers too
    assert [d["instanceId"] for d in rough["latest"]] == ["garbage-1"]
    assert "cannot decode" in rough["latest"][0]["reason"]
