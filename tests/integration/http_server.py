"""Running ``python -m durable_kafka serve`` for tests: a real uvicorn on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from netutil import free_ports  # tests/integration is on sys.path (rootdir-style tests)


@contextmanager
def serve(hub: str, bootstrap: str, log_dir: Path, *args: str) -> Iterator[str]:
    """Start the server for ``hub``, wait until /healthz answers 200 or 503, yield its base URL."""
    port = free_ports(1)[0]
    log_path = log_dir / f"serve-{port}.log"
    env = {**os.environ, "DURABLE_KAFKA_BOOTSTRAP": bootstrap}
    env.pop("DURABLE_KAFKA_API_KEY", None)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "durable_kafka", "serve", "--hub", hub, "--port", str(port), *args],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"serve exited with {process.returncode}: {log_path.read_text()}")
            try:
                if httpx.get(f"{base}/healthz", timeout=10).status_code in (200, 503):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"serve did not answer within 60s: {log_path.read_text()}")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
