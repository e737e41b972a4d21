"""Small helpers shared by tests that start their own brokers."""

from __future__ import annotations

import socket


def free_ports(count: int) -> list[int]:
    """``count`` loopback ports free right now (for a private broker's listeners)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()
