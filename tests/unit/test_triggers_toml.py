"""Routes from TOML: valid files become routes; invalid ones name the file, line and route."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from durable_kafka import triggers
from durable_kafka._trigger_toml import load_routes
from durable_kafka.errors import TriggerFileError

GOOD = '''
# orders start instances; payments wake them
[[route]]
kind = "start"
topic = "shop.orders"
orchestrator = "process_order"
instance_id = "order-{value.order_id}"
input = "{value}"
reuse = "replace"
create_missing = true

[[route]]
kind = "raise"
name = "payments"
topic = "shop.payments"
instance_id = "order-{value.order_id}"
event_name = "paid"
data = "{value.amount}"
decoder = "json"
filter = "json:loads"

[[route]]
kind = "signal"
topic = "shop.scans"
entity_id = "@stock@{key}"
operation = "remove"
decoder = "text"
'''


def test_a_valid_file_gives_routes(tmp_path: Any) -> None:
    f = tmp_path / "routes.toml"
    f.write_text(GOOD)
    loaded = load_routes(f)
    assert [type(r.route) for r in loaded] == [triggers.Start, triggers.Raise, triggers.Signal]
    assert [r.line for r in loaded] == [3, 12, 22]
    start = loaded[0].route
    assert isinstance(start, triggers.Start) and start.reuse == "replace" and loaded[0].create_missing
    assert loaded[1].route.name == "payments" and loaded[1].route.filter is not None
    assert loaded[2].route.decoder.name == "text"


@pytest.mark.parametrize(("body", "match"), [
    ('[[route]]\nkind = "start"\ntopic = "t"\ninstance_id = "{key}"\n', r":1: route #1: missing key\(s\) \['orchestrator'\]"),
    ('[[route]]\nkind = "shout"\ntopic = "t"\n', "kind must be one of"),
    ('[[route]]\nkind = "raise"\ntopic = "t"\ninstance_id = "{key}"\nevent_name = "e"\ncolour = 1\n', "unknown key"),
    ('[[route]]\nkind = "raise"\ntopic = "t"\ninstance_id = "{nope}"\nevent_name = "e"\n', "instance_id"),
    ('x = 1\n', "unknown top-level"),
    ('[[route]\nkind = "raise"\n', "not valid TOML.*line 1"),
    ('', "no routes"),
    ('[[route]]\nkind="resume"\ntopic="t"\ninstance_id="{key}"\n\n[[route]]\nkind="resume"\ntopic="t"\n'
     'instance_id="{key}"\ndecoder={ avro = "missing.avsc" }\n', r":6: route #2: .*missing.avsc"),
    ('[[route]]\nkind="resume"\ntopic="t"\ninstance_id="{key}"\nfilter="nomodule_xyz:f"\n', "cannot be imported"),
    ('[[route]]\nkind="start"\ntopic="t"\norchestrator="ghost"\ninstance_id="{key}"\n', "not registered"),
])
def test_invalid_files_name_line_and_route(tmp_path: Any, body: str, match: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(body)
    with pytest.raises(TriggerFileError, match=match):
        load_routes(f, orchestrators=lambda name: name != "ghost")


def test_the_cli_refuses_a_bad_file_before_the_worker_starts(tmp_path: Any, monkeypatch: Any,
                                                             capsys: Any) -> None:
    from durable_kafka.__main__ import main

    (tmp_path / "mini_app.py").write_text(
        "from durable_kafka import Worker\n"
        "class NoStart(Worker):\n"
        "    def start(self):\n"
        "        raise AssertionError('started despite a bad routes file')\n"
        "worker = NoStart(hub='h')\n")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[route]]\nkind = "raise"\ntopic = "t"\ninstance_id = "{key}"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["worker", "mini_app:worker", "--triggers", str(bad)])
    finally:
        sys.modules.pop("mini_app", None)
    assert code != 0
    err = capsys.readouterr().err
    assert "bad.toml:1: route #1" in err and "event_name" in err
