"""Helpers shared by the benchmark scripts: progress lines, tables, processes, Kafka accounting.

Nothing here knows about a particular engine. The orchestration benchmark imports it for
subprocess handling (start a worker, wait for its "running" line, read its resident memory),
for counting what a workload wrote to Kafka (end offsets and committed records per topic), and
for the probe rate that turns those counts into a ceiling.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PERFORMANCE_MD = ROOT / "docs" / "PERFORMANCE.md"

_T0 = time.monotonic()


def progress(message: str) -> None:
    """One progress line, prefixed with the seconds since the benchmark started."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", flush=True)


class Ticker:
    """Rate-limits progress lines inside a wait loop (one line every ``every`` seconds)."""

    def __init__(self, every: float = 2.0) -> None:
        self.every = every
        self._next = time.monotonic() + every

    def due(self) -> bool:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.every
            return True
        return False


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank: a value that was actually observed."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


# --------------------------------------------------------------------------- tables


def fmt(value: float | int | str | None, digits: int = 1) -> str:
    """Numbers with thousands separators; None and NaN as an en dash (not measured)."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def ratio(ours: float | None, peer: float | None) -> str:
    if ours is None or peer is None or not peer or math.isnan(ours) or math.isnan(peer):
        return "–"
    return f"{ours / peer:.2f}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table (also readable as plain text); first column left, the rest right."""
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status_kib(pid: int, field: str) -> int | None:
    """A ``/proc/<pid>/status`` field in KiB (VmRSS: resident now, VmHWM: peak resident)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def rss_mib(pid: int, field: str = "VmRSS") -> float | None:
    kib = proc_status_kib(pid, field)
    return None if kib is None else kib / 1024


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time the process has used so far (from /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15 of stat)


class ChildProcess:
    """A subprocess whose stdout is read by a thread, so its lines can be waited for.

    Every line is kept (the last 200) for error messages; ``wait_for_line`` blocks until a
    line containing a marker shows up, and fails with the process's output if it exits first.
    """

    def __init__(self, argv: list[str], *, name: str, cwd: Path | str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines: list[str] = []
        self._count = 0
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True)
        self._reader.start()
        self.listeners: list[Callable[[str], None]] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            for listener in list(self.listeners):
                listener(line)
            with self._cond:
                self.lines.append(line)
                self._count += 1
                del self.lines[:-200]
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for_line(self, marker: str, timeout: float) -> str:
        """The first line containing ``marker`` printed since the process started (the last
        200 lines are kept, so wait soon after the line is expected)."""
        deadline = time.monotonic() + timeout
        checked = 0  # lines examined, counted from the process start
        with self._cond:
            while True:
                first_kept = self._count - len(self.lines)
                for line in self.lines[max(0, checked - first_kept):]:
                    if marker in line:
                        return line
                checked = self._count
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before "
                                       f"printing {marker!r}:\n" + "\n".join(self.lines[-40:]))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"{self.name} did not print {marker!r} within {timeout}s:\n"
                                       + "\n".join(self.lines[-40:]))
                self._cond.wait(min(remaining, 0.5))

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                               + "\n".join(self.lines[-40:]))

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)


def unique_name(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(5)}"


# --------------------------------------------------------------------------- Kafka accounting


def end_offsets(bootstrap: str, topics: Sequence[str]) -> dict[str, dict[int, int]]:
    """High watermark of every partition of ``topics`` (commit markers occupy offsets too)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("bench-offsets-"),
                         "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(timeout=10)
        result: dict[str, dict[int, int]] = {}
        for topic in topics:
            info = metadata.topics.get(topic)
            if info is None or info.error is not None:
                continue
            result[topic] = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10,
                                                               cached=False)[1]
                             for p in info.partitions}
        return result
    finally:
        consumer.close()


def count_committed_records(bootstrap: str, before: dict[str, dict[int, int]],
                            after: dict[str, dict[int, int]]) -> dict[str, int]:
    """Data records (read_committed, so no commit markers and no aborted records) per topic
    between two ``end_offsets`` snapshots."""
    from confluent_kafka import Consumer, TopicPartition

    counts: dict[str, int] = {}
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("bench-count-"),
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "enable.partition.eof": True, "fetch.wait.max.ms": 50})
    try:
        for topic, ends in after.items():
            starts = before.get(topic, {})
            ranges = {p: (starts.get(p, 0), end) for p, end in ends.items() if end > starts.get(p, 0)}
            counts[topic] = 0
            if not ranges:
                continue
            consumer.assign([TopicPartition(topic, p, lo) for p, (lo, _hi) in ranges.items()])
            pending = set(ranges)
            deadline = time.monotonic() + 120
            while pending and time.monotonic() < deadline:
                for message in consumer.consume(1000, 0.5):
                    p = message.partition()
                    if message.error() is not None:  # partition EOF: nothing more to read there
                        pending.discard(p)
                        continue
                    if message.offset() < ranges[p][1]:
                        counts[topic] += 1
                    if message.offset() + 1 >= ranges[p][1]:
                        pending.discard(p)
            consumer.unassign()
        return counts
    finally:
        consumer.close()


def offset_deltas(before: dict[str, dict[int, int]], after: dict[str, dict[int, int]]) -> dict[str, int]:
    return {topic: sum(end - before.get(topic, {}).get(p, 0) for p, end in ends.items())
            for topic, ends in after.items()}


# --------------------------------------------------------------------------- probe rate


@dataclass
class ProbeRate:
    """Records per second that Kafka moved in the physical-limit probe, and where it came from."""

    rate: float
    source: str
    transactional_rate: float | None = None


def _number(cell: str) -> float | None:
    text = cell.replace("\u202f", "").replace("\xa0", "").replace(" ", "").replace(",", "")
    try:
        return float(text)
    except ValueError:
        return None


def probe_rate_from_doc(path: Path = PERFORMANCE_MD) -> ProbeRate | None:
    """The latest msg/s of probe (a) (and (c2), transactions) in the "Ceilings" section.

    The table is another benchmark's output: its header names the msg/s columns, row "a" is the
    plain produce->consume probe. The right-most msg/s column is taken as the latest run.
    """
    try:
        text = path.read_text()
    except OSError:
        return None
    section = text.split("## Ceilings", 1)
    if len(section) < 2:
        return None
    body = re.split(r"\n## ", section[1], maxsplit=1)[0]
    header: list[str] | None = None
    found: dict[str, float] = {}
    for line in body.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        columns = [i for i, h in enumerate(header) if "msg/s" in h]
        if not columns or not cells:
            continue
        key = cells[0].split()[0] if cells[0] else ""
        if key in ("a", "c2"):
            values = [_number(cells[i]) for i in columns if i < len(cells)]
            values = [v for v in values if v]
            if values:
                found[key] = values[-1]
    if "a" not in found:
        return None
    return ProbeRate(found["a"], "docs/PERFORMANCE.md, Ceilings: probe (a), latest run",
                     found.get("c2"))


def measure_probe_rate(bootstrap: str, messages: int = 20000) -> ProbeRate:
    """A quick produce->consume rate of 165-byte records on a fresh 4-partition topic."""
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = unique_name("bench-probe-")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 4, 1)])[topic].result(30)
    try:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("bench-probe-"),
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe([topic])
        consumer.consume(1, 3.0)  # join the group before timing
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        payload = os.urandom(165)
        got = 0

        def read() -> None:
            nonlocal got
            deadline = time.monotonic() + 60
            while got < messages and time.monotonic() < deadline:
                got += sum(1 for m in consumer.consume(1000, 0.2) if m.error() is None)

        reader = threading.Thread(target=read)
        began = time.perf_counter()
        reader.start()
        for i in range(messages):
            while True:
                try:
                    producer.produce(topic, key=str(i % 1000).encode(), value=payload)
                    break
                except BufferError:
                    producer.poll(0.01)
            producer.poll(0)
        producer.flush(30)
        reader.join()
        elapsed = time.perf_counter() - began
        consumer.close()
        return ProbeRate(got / elapsed, f"measured now: {messages:,} records produce->consume, one process")
    finally:
        admin.delete_topics([topic])


# --------------------------------------------------------------------------- machine load


def load_average() -> str:
    """The 1/5/15-minute load averages (other work on this 2-core machine skews every figure)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# --------------------------------------------------------------------------- sampling profiler


class PySpy:
    """``py-spy record`` of a running process (raw collapsed stacks), summarised when stopped.

    Optional: only used with ``--profile``; needs ``pip install py-spy`` and ptrace rights.
    """

    def __init__(self, pid: int, output: Path, rate: int = 200, gil: bool = False) -> None:
        exe = Path(os.sys.executable).parent / "py-spy"
        self.output = output
        # gil: only the thread holding the GIL (where the process's Python CPU goes), not every running thread
        self.proc = subprocess.Popen([str(exe), "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                                      "--threads", "--nonblocking", *(["--gil"] if gil else []), "--output", str(output)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def summarise_collapsed(path: Path, top: int = 25) -> str:
    """Per-thread sample share, then functions by inclusive and by self samples (idle excluded)."""
    from collections import Counter

    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    idle_markers = ("select (selectors", "poll (confluent", "wait (threading", "_worker (concurrent",
                    "consume (", "sleep", "_run_once (asyncio", "get (queue", "acquire")
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        return f"(no profile: {error})"
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread, frames = frames[0], frames[1:]
        if not frames:
            continue
        if any(marker in frames[-1] for marker in idle_markers):
            continue  # waiting, not working
        total += count
        threads[thread] += count
        leaf[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "(no busy samples)"
    out = [f"busy samples: {total}", "", "by thread:"]
    out += [f"  {100 * c / total:5.1f}%  {t}" for t, c in threads.most_common(8)]
    out += ["", "inclusive (function and what it calls):"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in inclusive.most_common(top)]
    out += ["", "self (the function's own code):"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in leaf.most_common(top)]
    return "\n".join(out)
