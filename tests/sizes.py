"""The one size knob of the long scenarios: ``DK_CHAOS_SCALE`` (1 = full size, ``make chaos``).

The normal suite (``make test``) runs every long fault scenario scaled down (the variable unset:
0.2), so it stays under 15 minutes; ``make chaos`` runs the same tests at full size. Scaling
changes how many instances, records or schedules go through a scenario, never what it does
(the kill -9 still lands mid-stream) nor what it asserts. The scenarios that have a full size
are marked ``chaos``: tests/chaos/ (all of it) and the heavy ones in tests/integration/
(``make chaos`` selects them with ``-m chaos``).
"""

from __future__ import annotations

import os

DEFAULT_SCALE = 0.2


def scale() -> float:
    """``DK_CHAOS_SCALE``: 1 is the full size (``make chaos``); unset, the normal suite's 0.2."""
    try:
        return max(0.01, float(os.environ.get("DK_CHAOS_SCALE", str(DEFAULT_SCALE))))
    except ValueError:
        return DEFAULT_SCALE


def sized(full: int, minimum: int = 1) -> int:
    """``full`` scaled by :func:`scale`, never below ``minimum``."""
    return max(minimum, round(full * scale()))


def full_size() -> bool:
    """True under ``make chaos`` (scale 1 or more): the scenarios' issue-sized runs."""
    return scale() >= 1
