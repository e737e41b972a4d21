"""How long the dashboard's instance table takes to filter, count and page a hub's statuses.

The list route answers from the status cache held in memory (every instance's latest status),
so its cost is one pass to filter and count plus a sort. This measures that pure step
(``filter_instances``) for 1k, 10k and 100k instances, unfiltered and with a status + name
filter, asking for a page in the middle. No broker needed:

    .venv/bin/python bench/dashboard_list.py
"""

from __future__ import annotations

import statistics
import time
from datetime import datetime, timedelta, timezone

from durable_kafka._client_models import OrchestrationStatus
from durable_kafka._dashboard_views import InstanceFilter, filter_instances
from durable_kafka.streams.events import InstanceStatus

T0 = datetime(2026, 12, 2, tzinfo=timezone.utc)
STATUSES = [OrchestrationStatus.RUNNING, OrchestrationStatus.COMPLETED, OrchestrationStatus.FAILED]


def fleet(n: int) -> list[InstanceStatus]:
    return [InstanceStatus(instance_id=f"order-{i:07d}", name=("ship", "process_order")[i % 2], execution_id="e",
                           runtime_status=STATUSES[i % 3], created_at=T0 + timedelta(milliseconds=i),
                           last_updated_at=T0 + timedelta(milliseconds=i + 5)) for i in range(n)]


def main() -> None:
    filters = {"unfiltered": InstanceFilter(),
               "status+name": InstanceFilter(statuses=frozenset({OrchestrationStatus.RUNNING}), name="ORDER")}
    print(f"{'instances':>10} {'filter':<12} {'median ms':>10} {'min ms':>8}")
    for n in (1_000, 10_000, 100_000):
        statuses = fleet(n)
        for label, where in filters.items():
            times = []
            for _ in range(9):
                start = time.perf_counter()
                filter_instances(statuses, where, offset=n // 4, limit=50)
                times.append((time.perf_counter() - start) * 1000)
            print(f"{n:>10} {label:<12} {statistics.median(times):>10.1f} {min(times):>8.1f}")


if __name__ == "__main__":
    main()
