"""Error type names in failure details, and how a failure is matched against an exception type.

durabletask-python (and durabletask-dotnet before it) records a failure's ``error_type`` as the
*qualified* name of the exception class (``builtins.ValueError``, ``orders.errors.OutOfStock``)
so that two classes with the same short name stay apart, and offers
``FailureDetails.is_caused_by(...)`` so callers need not compare strings by hand. Histories
written before this change hold bare names (``ValueError``); they still match by short name.

Nothing here imports an exception class by name: a type argument is compared against the
recorded name through the classes already loaded in this process (the type and its subclasses).
"""

from __future__ import annotations

__all__ = ["error_type_matches", "qualified_name"]


def qualified_name(exception_type: type) -> str:
    """``<module>.<qualname>`` of a class; builtins keep their ``builtins.`` prefix."""
    module = getattr(exception_type, "__module__", None) or "builtins"
    return f"{module}.{exception_type.__qualname__}"


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _name_matches(stored: str, wanted: str) -> bool:
    if not stored or not wanted:
        return False
    if stored == wanted:
        return True
    if "." in stored and "." in wanted:
        return False  # two qualified names: only an exact match counts
    return _short(stored) == _short(wanted)


def _type_matches(stored: str, candidate: type) -> bool:
    name = qualified_name(candidate)
    if stored == name:
        return True
    # A bare stored name (an older history, another SDK) can only be compared by short name.
    return "." not in stored and stored == _short(name)


def error_type_matches(stored: str, wanted: str | type[BaseException]) -> bool:
    """Whether a failure recorded as ``stored`` was caused by ``wanted``.

    A **type** matches the recorded type or any of its subclasses loaded in this process; a
    **name** is compared as text (qualified or short, no subclass awareness), and two
    qualified names must be equal. Anything else raises :class:`TypeError`.
    """
    if isinstance(wanted, str):
        return _name_matches(stored, wanted)
    if not (isinstance(wanted, type) and issubclass(wanted, BaseException)):
        raise TypeError(f"is_caused_by() takes an exception type or a type name, got {wanted!r}")
    if not stored:
        return False
    seen: set[int] = set()
    pending: list[type] = [wanted]
    while pending:
        candidate = pending.pop()
        if id(candidate) in seen:
            continue
        seen.add(id(candidate))
        if _type_matches(stored, candidate):
            return True
        pending.extend(candidate.__subclasses__())
    return False
