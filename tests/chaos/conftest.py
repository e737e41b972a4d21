"""Chaos scenarios (issue 12): real broker, real subprocess workers, faults injected on purpose.

Every test here is marked ``chaos`` and ``integration`` (it needs a broker, so ``make
test-unit`` leaves it out). Sizes come from ``DK_CHAOS_SCALE`` (see chaos_harness.scale): the
normal suite runs a scaled-down pass, ``make chaos`` the full sizes. Each scenario prints a
one-line summary; they are repeated at the end of the run (also under ``-q`` without ``-s``),
because the figures are the point of the suite.

The ``hub`` fixtures are the integration suite's, imported rather than copied.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos_harness import SUMMARIES  # tests/chaos is on sys.path (rootdir-style tests)
from tests.integration.conftest import hub, hub_bootstrap, hub_factory  # noqa: F401 - fixtures

CHAOS_DIR = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(CHAOS_DIR):
            item.add_marker(pytest.mark.chaos)
            item.add_marker(pytest.mark.integration)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # noqa: ANN001
    if SUMMARIES:
        terminalreporter.section("chaos summaries")
        for line in SUMMARIES:
            terminalreporter.write_line(line)
