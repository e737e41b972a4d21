"""EntityInstanceId, entity_name, EntityContext and DurableEntity dispatch (no broker)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from durable_kafka.entities import (
    DurableEntity,
    EntityContext,
    EntityInstanceId,
    entity_name,
    run_operation,
)
from durable_kafka.errors import (
    EntityOperationNotFoundError,
    InvalidArgumentError,
    InvalidEntityIdError,
)


# ---------------------------------------------------------------- EntityInstanceId
def test_id_string_form_and_lowercased_name():
    eid = EntityInstanceId("Counter", "Key-1")
    assert str(eid) == "@counter@Key-1"
    assert eid.name == eid.entity == "counter"
    assert eid.key == "Key-1"


@pytest.mark.parametrize("text", ["@counter@c1", "@counter@", "@a@b@c", "@COUNTER@X"])
def test_parse_round_trips(text):
    eid = EntityInstanceId.parse(text)
    assert EntityInstanceId.parse(str(eid)) == eid
    assert str(eid) == "@" + text[1:].split("@", 1)[0].lower() + "@" + text[1:].split("@", 1)[1]


def test_key_may_contain_at():
    eid = EntityInstanceId.parse("@mail@a@b.c")
    assert (eid.name, eid.key) == ("mail", "a@b.c")


@pytest.mark.parametrize("bad", ["counter@c1", "@counter", "@@key", "", None, 42])
def test_parse_rejects_bad_input_with_typed_error(bad):
    with pytest.raises(InvalidEntityIdError):
        EntityInstanceId.parse(bad)


def test_invalid_entity_id_error_is_a_value_error():
    with pytest.raises(ValueError):
        EntityInstanceId("bad@name", "k")


def test_ids_are_hashable_ordered_and_immutable():
    a, b = EntityInstanceId("c", "1"), EntityInstanceId("C", "1")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert sorted([EntityInstanceId("c", "2"), a]) == [a, EntityInstanceId("c", "2")]
    with pytest.raises(AttributeError):
        a.key = "2"


def test_entity_name_from_function_class_or_explicit():
    def Counter(ctx, input):  # noqa: N802 - a capitalised name, lower-cased on registration
        return None

    class Account(DurableEntity):
        pass

    assert entity_name(Counter) == "counter"
    assert entity_name(Account) == "account"
    assert entity_name(Account, "Bank") == "bank"
    with pytest.raises(InvalidEntityIdError):
        entity_name(Account, "a@b")
    with pytest.raises(InvalidArgumentError):
        entity_name(lambda ctx, i: None)


# ---------------------------------------------------------------- EntityContext
def _ctx(op="op", state=None, sender=None):
    return EntityContext(EntityInstanceId("counter", "k"), op, state, orchestration_id=sender)


def test_state_get_set_delete():
    ctx = _ctx(state="5")
    assert ctx.get_state() == 5
    assert ctx.get_state(int, 0) == 5
    assert ctx.get_state(str) == "5"
    ctx.set_state({"n": 1})
    assert ctx.state_changed and json.loads(ctx.state_json) == {"n": 1}
    ctx.delete_state()
    assert ctx.state_json is None and ctx.get_state(int, 7) == 7
    assert not ctx.has_state


def test_get_state_returns_a_copy():
    ctx = _ctx(state="[1, 2]")
    ctx.get_state().append(3)
    assert ctx.get_state() == [1, 2]
    assert not ctx.state_changed


@dataclass
class Balance:
    amount: int
    currency: str = "EUR"


def test_get_state_into_a_dataclass_and_set_a_dataclass():
    ctx = _ctx()
    ctx.set_state(Balance(3))
    assert ctx.get_state(Balance) == Balance(3, "EUR")
    with pytest.raises(TypeError):
        _ctx(state='"x"').get_state(int)


def test_set_state_rejects_non_json():
    with pytest.raises(InvalidArgumentError):
        _ctx().set_state(object())


def test_signals_and_orchestrations_are_recorded_not_sent():
    ctx = _ctx()
    ctx.signal_entity(EntityInstanceId("Other", "x"), "add", 2)
    ctx.signal_entity("@other@y", "reset")
    iid = ctx.schedule_new_orchestration("report", input={"a": 1})
    given = ctx.schedule_new_orchestration("report", instance_id="fixed")
    assert [(s.entity_id, s.operation, s.input) for s in ctx.outcome.signals] == [
        ("@other@x", "add", "2"), ("@other@y", "reset", None)]
    assert [(o.name, o.instance_id, o.input) for o in ctx.outcome.orchestrations] == [
        ("report", iid, '{"a": 1}'), ("report", "fixed", None)]
    assert given == "fixed" and iid
    with pytest.raises(InvalidEntityIdError):
        ctx.signal_entity("not-an-id", "x")


# ---------------------------------------------------------------- dispatch
def counter(ctx: EntityContext, input):
    n = ctx.get_state(int, 0)
    if ctx.operation == "add":
        ctx.set_state(n + input)
    elif ctx.operation == "get":
        return n
    elif ctx.operation == "delete":
        ctx.delete_state()
    else:
        raise ValueError(f"unknown operation {ctx.operation}")
    return None


class Account(DurableEntity):
    def deposit(self, amount):
        self.set_state(self.get_state(int, 0) + amount)
        return self.get_state()

    def balance(self):
        return self.get_state(int, 0)

    def Close(self):  # noqa: N802 - case-insensitive operation matching
        self.signal_entity("@audit@log", "closed", str(self.entity_context.entity_id))
        self.delete_state()

    def _secret(self):
        return "no"


def test_function_entity_dispatch():
    ctx = _ctx("add", "1")
    assert run_operation(counter, ctx, 4) is None
    assert ctx.get_state() == 5
    assert run_operation(counter, _ctx("get", "9"), None) == 9


def test_class_entity_dispatch_with_and_without_input():
    ctx = _ctx("deposit", "10")
    assert run_operation(Account, ctx, 5) == 15
    assert run_operation(Account, _ctx("balance", "15"), None) == 15
    close = _ctx("close", "15")
    run_operation(Account, close, None)
    assert close.state_json is None and close.outcome.signals[0].entity_id == "@audit@log"


def test_class_entity_implicit_delete():
    ctx = _ctx("delete", "3")
    run_operation(Account, ctx, None)
    assert ctx.state_changed and ctx.state_json is None


@pytest.mark.parametrize("op", ["withdraw", "_secret", "get_state", "set_state", "entity_context"])
def test_class_entity_unknown_or_private_operation_fails(op):
    with pytest.raises(EntityOperationNotFoundError):
        run_operation(Account, _ctx(op, "1"), None)


def test_an_operation_may_send_a_delayed_signal():
    from datetime import datetime, timedelta, timezone

    from durable_kafka.entities import EntityContext, EntityInstanceId

    ctx = EntityContext(EntityInstanceId("clock", "c"), "tick", None)
    at = datetime(2026, 1, 1, 9, tzinfo=timezone(timedelta(hours=2)))
    ctx.signal_entity("@clock@c", "tick", 1, signal_time=at)
    ctx.signal_entity("@clock@c", "tick", 2)
    sent = ctx.outcome.signals
    assert sent[0].scheduled_time == datetime(2026, 1, 1, 7, tzinfo=timezone.utc) and sent[1].scheduled_time is None
