"""Soak run: a steady mixed load at half the measured maximum, a worker kill -9 every few minutes.

    python tests/chaos/soak.py --duration 20m --kill-every 3m        (make soak DURATION=20m)

What it does, in order:
  1. creates a fresh hub (deleted at the end unless --keep) and starts --workers worker
     subprocesses (tests/chaos/chaos_app.py);
  2. measures the maximum throughput briefly: a burst of orchestrations (activities, a timer,
     a fan-out) all queued at once, completions per second until they are done;
  3. runs the steady load for --duration at half that rate: orchestrations with activities and
     timers, plus entity signals to a few counters; every --kill-every one worker (round robin)
     is killed with SIGKILL and started again at once, as a supervisor would; a worker that
     exits on its own (code 70, stuck) is restarted and counted;
  4. samples the RSS of every process (each worker, the broker JVM, this driver) every
     --sample-every seconds, prints progress while it runs;
  5. drains, then prints the ledger (lost / duplicated / stuck / wrong outputs, re-executed
     activities, entity counts) and the RSS table with growth per hour per process.

Why half the maximum: a soak looks for slow leaks and rare races under a load the system can
carry, not for the ceiling (bench/ does that); at full load, queueing would hide both.
Exit status: 0 when the ledger is clean and every entity count is exact, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # chaos_harness, chaos_app
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # sizes (imported by chaos_harness)

from chaos_harness import Disruption, WorkerProcess, judge, rss_of  # noqa: E402
from chaos_app import expected_flow_output  # noqa: E402
from durable_kafka import Client, OrchestrationStatus  # noqa: E402
from durable_kafka.streams.admin import delete_hub, ensure_topics  # noqa: E402
from durable_kafka.streams.config import bootstrap_servers  # noqa: E402

TERMINAL = {OrchestrationStatus.COMPLETED, OrchestrationStatus.FAILED, OrchestrationStatus.TERMINATED}
ENTITIES = [f"@tally@soak{i}" for i in range(8)]


def seconds(text: str) -> float:
    """'20m', '90s', '1h', '45' -> seconds."""
    text = text.strip().lower()
    unit = {"s": 1, "m": 60, "h": 3600}.get(text[-1:])
    return float(text[:-1]) * unit if unit else float(text)


def pid_listening_on(port: int) -> int | None:
    """The pid of the process with a LISTEN socket on ``port`` (the broker JVM), from /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            for fd in (pid_dir / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(pid_dir.name)
        except OSError:
            continue
    return None


@dataclass
class RssSeries:
    """RSS samples of one process incarnation: (seconds since start of run, bytes)."""

    label: str
    pid: int
    samples: list[tuple[float, int]] = field(default_factory=list)

    def growth_per_hour(self, warmup: float) -> float | None:
        """Least-squares slope after ``warmup`` seconds of this incarnation, in bytes per hour."""
        if not self.samples:
            return None
        t0 = self.samples[0][0]
        pts = [(t, r) for t, r in self.samples if t - t0 >= warmup]
        if len(pts) < 3:
            return None
        n = len(pts)
        mt = sum(t for t, _ in pts) / n
        mr = sum(r for _, r in pts) / n
        var = sum((t - mt) ** 2 for t, _ in pts)
        if var == 0:
            return None
        return sum((t - mt) * (r - mr) for t, r in pts) / var * 3600


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.bootstrap = args.bootstrap or bootstrap_servers()
        self.hub = args.hub or f"soak{secrets.token_hex(4)}"
        self.workdir = Path(args.workdir or tempfile.mkdtemp(prefix="dk-soak-"))
        self.effects = self.workdir / "effects.log"
        self.workers = [WorkerProcess(self.bootstrap, self.hub, args.partitions, self.workdir, f"w{i + 1}",
                                      self.effects, stuck_after=30) for i in range(args.workers)]
        self.expected: dict[str, object] = {}
        self.pending: set[str] = set()
        self.signals = {e: 0 for e in ENTITIES}
        self.series: dict[tuple[str, int], RssSeries] = {}
        self.disruptions: list[Disruption] = []
        self.self_exits = 0
        self.kills = 0
        self.began = time.monotonic()
        self.completions: list[float] = []
        self.broker_pid = pid_listening_on(int(self.bootstrap.rsplit(":", 1)[1]))
        self.rng = random.Random(args.seed)

    # -------------------------------------------------------------------------------- helpers
    def say(self, text: str) -> None:
        print(f"[soak {time.monotonic() - self.began:7.1f}s] {text}", flush=True)

    def schedule(self, client: Client, timer_s: float) -> None:
        n = len(self.expected)
        iid = f"soak-{n}"
        client.schedule_new_orchestration("chaos_flow", input={"n": n, "timer_s": timer_s}, instance_id=iid,
                                          wait_for_acceptance=False)
        self.expected[iid] = expected_flow_output(n)
        self.pending.add(iid)

    def reap(self, client: Client) -> None:
        done = []
        for iid in self.pending:
            s = client.get_orchestration_state(iid, fetch_payloads=False)
            if s is not None and s.runtime_status in TERMINAL:
                done.append(iid)
        now = time.monotonic()
        for iid in done:
            self.pending.discard(iid)
            self.completions.append(now)

    def sample_rss(self) -> None:
        t = time.monotonic() - self.began
        procs = [(w.worker_id, w.pid if w.alive() else None) for w in self.workers]
        procs += [("broker", self.broker_pid), ("driver", os.getpid())]
        for label, pid in procs:
            rss = rss_of(pid)
            if pid is None or rss is None:
                continue
            self.series.setdefault((label, pid), RssSeries(label, pid)).samples.append((t, rss))

    def supervise(self) -> None:
        for w in self.workers:
            if not w.alive():
                self.self_exits += 1
                self.say(f"{w.worker_id} exited on its own ({w.proc.returncode if w.proc else '?'}); restarting")
                w.start()

    def rss_now(self) -> str:
        parts = []
        for w in self.workers:
            rss = rss_of(w.pid) if w.alive() else None
            parts.append(f"{w.worker_id}={rss / 2**20:.0f}MB" if rss else f"{w.worker_id}=-")
        b = rss_of(self.broker_pid)
        parts.append(f"broker={b / 2**20:.0f}MB" if b else "broker=?")
        parts.append(f"driver={(rss_of(os.getpid()) or 0) / 2**20:.0f}MB")
        return " ".join(parts)

    # -------------------------------------------------------------------------------- phases
    def measure_max(self, client: Client) -> float:
        burst = self.args.burst
        self.say(f"measuring the maximum: {burst} orchestrations queued at once")
        began = time.monotonic()
        for _ in range(burst):
            self.schedule(client, 0.2)
        client.flush()
        deadline = began + self.args.measure_timeout
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.5)
            self.reap(client)
        elapsed = time.monotonic() - began
        done = burst - len(self.pending)
        rate = done / elapsed
        self.say(f"maximum: {done} orchestrations in {elapsed:.1f}s = {rate:.1f}/s "
                 f"(each: 5 activities, a timer, a fan-out)")
        return rate

    def steady(self, client: Client, rate: float) -> None:
        duration = seconds(self.args.duration)
        kill_every = seconds(self.args.kill_every)
        self.say(f"steady load: {rate:.1f} orchestrations/s + {rate:.1f} entity signals/s for {duration:.0f}s, "
                 f"kill -9 every {kill_every:.0f}s")
        start = time.monotonic()
        next_kill = start + kill_every
        next_sample = next_progress = start
        sent = 0.0
        victim = 0
        last_progress = (start, len(self.expected) - len(self.pending))
        while (now := time.monotonic()) < start + duration:
            due = (now - start) * rate
            while sent < due:
                self.schedule(client, self.rng.uniform(0.5, 3.0))
                entity = self.rng.choice(ENTITIES)
                client.signal_entity(entity, "add", 1, wait_for_delivery=False)
                self.signals[entity] += 1
                sent += 1
            if now >= next_kill:
                w = self.workers[victim % len(self.workers)]
                victim += 1
                at = time.time()
                w.kill()
                w.start()
                self.kills += 1
                self.disruptions.append(Disruption(f"kill{self.kills}", at))
                self.say(f"killed {w.worker_id} with SIGKILL and restarted it (kill {self.kills})")
                next_kill = time.monotonic() + kill_every
            if now >= next_sample:
                self.sample_rss()
                self.supervise()
                next_sample = now + self.args.sample_every
            if now >= next_progress:
                self.reap(client)
                completed = len(self.expected) - len(self.pending)
                span = max(1e-3, now - last_progress[0])
                rate_now = (completed - last_progress[1]) / span
                last_progress = (now, completed)
                self.say(f"scheduled={len(self.expected)} completed={completed} "
                         f"in-flight={len(self.pending)} rate={rate_now:.1f}/s kills={self.kills} "
                         f"| RSS {self.rss_now()}")
                next_progress = now + self.args.progress_every
            time.sleep(0.05)
        client.flush()

    def drain(self, client: Client) -> None:
        deadline = time.monotonic() + self.args.drain_timeout
        self.say(f"draining {len(self.pending)} in-flight orchestrations")
        while self.pending and time.monotonic() < deadline:
            self.supervise()
            time.sleep(1.0)
            self.reap(client)
        self.sample_rss()

    def entity_counts(self, client: Client) -> dict[str, tuple[int, int]]:
        """entity -> (signals sent, count applied), waiting (bounded) for the counts to settle."""
        deadline = time.monotonic() + 60
        while True:
            got = {}
            for e, sent in self.signals.items():
                meta = client.get_entity(e)
                got[e] = (sent, meta.get_state(int) if meta is not None else 0)
            if all(a == b for a, b in got.values()) or time.monotonic() > deadline:
                return got
            time.sleep(1.0)

    # -------------------------------------------------------------------------------- the run
    def run(self) -> int:
        self.say(f"hub {self.hub} on {self.bootstrap}, {self.args.partitions} partitions, "
                 f"{len(self.workers)} workers, work dir {self.workdir}; broker pid {self.broker_pid}")
        ensure_topics(self.hub, self.args.partitions, bootstrap=self.bootstrap)
        try:
            for w in self.workers:
                w.start()
            with Client(self.bootstrap, hub=self.hub) as client:
                maximum = self.measure_max(client)
                rate = self.args.rate or max(0.5, maximum / 2)
                self.steady(client, rate)
                self.drain(client)
                entities = self.entity_counts(client)
            for w in self.workers:
                w.stop()
            return self.report(maximum, rate, entities)
        finally:
            for w in self.workers:
                w.stop()
            if not self.args.keep:
                try:
                    delete_hub(self.hub, bootstrap=self.bootstrap)
                except Exception as exc:  # noqa: BLE001 - reported; the run's verdict stands
                    self.say(f"could not delete hub {self.hub}: {exc}")

    def report(self, maximum: float, rate: float, entities: dict[str, tuple[int, int]]) -> int:
        self.say("reading the history topic for the ledger")
        verdict = judge("soak", self.bootstrap, f"{self.hub}.history", self.expected, self.effects,
                        self.disruptions)
        verdict.extra.update(kills=self.kills, self_exits=self.self_exits, max_rate=f"{maximum:.1f}/s",
                             load=f"{rate:.1f}/s")
        wrong_entities = {e: v for e, v in entities.items() if v[0] != v[1]}
        print()
        print(verdict.line())
        print(f"entities: {len(entities)} counters, {sum(s for s, _ in entities.values())} signals sent, "
              f"{sum(c for _, c in entities.values())} applied, mismatches: {wrong_entities or 'none'}")
        print(f"{'process':10} {'pid':>8} {'samples':>7} {'first MB':>9} {'last MB':>8} {'max MB':>7} "
              f"{'growth MB/h':>11}")
        warmup = min(60.0, seconds(self.args.duration) / 4)
        for s in sorted(self.series.values(), key=lambda s: (s.label, s.samples[0][0])):
            rs = [r for _, r in s.samples]
            g = s.growth_per_hour(warmup)
            print(f"{s.label:10} {s.pid:>8} {len(rs):>7} {rs[0] / 2**20:>9.1f} {rs[-1] / 2**20:>8.1f} "
                  f"{max(rs) / 2**20:>7.1f} {('%.1f' % (g / 2**20)) if g is not None else 'n/a':>11}")
        ok = verdict.ok and not wrong_entities
        print(f"soak: {'OK' if ok else 'PROBLEMS'}")
        return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", default="20m", help="steady-load duration: 90s, 20m, 1h (default 20m)")
    p.add_argument("--kill-every", default="3m", help="kill -9 one worker this often (default 3m)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--rate", type=float, default=None, help="orchestrations/s (default: half the measured max)")
    p.add_argument("--burst", type=int, default=300, help="orchestrations of the maximum-throughput burst")
    p.add_argument("--measure-timeout", type=float, default=120.0)
    p.add_argument("--drain-timeout", type=float, default=300.0)
    p.add_argument("--sample-every", type=float, default=10.0, help="RSS sampling period, seconds")
    p.add_argument("--progress-every", type=float, default=30.0)
    p.add_argument("--bootstrap", default=None)
    p.add_argument("--hub", default=None)
    p.add_argument("--workdir", default=None)
    p.add_argument("--keep", action="store_true", help="keep the hub's topics afterwards")
    p.add_argument("--seed", type=int, default=12)
    args = p.parse_args(argv)
    return Soak(args).run()


if __name__ == "__main__":
    sys.exit(main())
