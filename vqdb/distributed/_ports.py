"""Which network ports the processes of a Ray cluster listen on, and whether they are loopback only.

Used once after ``vqdb serve --ray-address local`` starts its private cluster (a warning names any
port reachable from other hosts) and by the tests that hold Ray to loopback. Reads the process table
with ``psutil`` (Linux, macOS; where it cannot see the sockets the answer is "unknown", not "none").
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple


class Listener(NamedTuple):
    """One listening socket: the process holding it, its address, and TCP or UDP."""

    pid: int
    process: str  # the process name, e.g. "raylet", "gcs_server", "ray::ShardActor"
    ip: str
    port: int
    kind: str  # "tcp" or "udp"


def is_loopback(ip: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (``::ffff:127.0.0.1``)."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


def process_tree(pid: int | None = None) -> list:
    """``psutil.Process`` of ``pid`` (default: this process) and of all its descendants."""
    import psutil

    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def listeners(processes) -> list[Listener]:
    """Every listening TCP socket and bound UDP socket of ``processes`` (``psutil.Process`` objects;
    processes that are gone or not ours to inspect are skipped)."""
    import socket

    import psutil

    out = []
    for p in processes:
        try:
            name = p.name()
            conns = p.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        for c in conns:
            tcp = c.type == socket.SOCK_STREAM
            if (tcp and c.status != psutil.CONN_LISTEN) or (not tcp and (c.raddr or not c.laddr)):
                continue
            out.append(Listener(p.pid, name, c.laddr.ip, c.laddr.port, "tcp" if tcp else "udp"))
    return out


def exposed(found: list[Listener]) -> list[Listener]:
    """The listeners of ``found`` that other hosts could reach (not bound to a loopback address)."""
    return [x for x in found if not is_loopback(x.ip)]
