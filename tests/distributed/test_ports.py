"""The listener check that holds the local Ray cluster to loopback finds what another host could reach."""

from __future__ import annotations

import subprocess
import sys

import pytest

psutil = pytest.importorskip("psutil")

from vqdb.distributed._ports import exposed, is_loopback, listeners, process_tree  # noqa: E402

_LISTEN = """
import socket, sys
tcp = socket.socket(); tcp.bind((sys.argv[1], 0)); tcp.listen()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind((sys.argv[1], 0))
print(tcp.getsockname()[1], udp.getsockname()[1], flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize(
    "ip, want",
    [
        ("127.0.0.1", True),
        ("127.3.4.5", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.2", False),
        ("::ffff:192.0.2.2", False),
        ("fe80::1%eth0", False),
        ("not an address", False),
    ],
)
def test_is_loopback(ip, want):
    assert is_loopback(ip) is want


@pytest.mark.parametrize("host, reachable", [("0.0.0.0", True), ("127.0.0.1", False)])
def test_a_child_listening_on_every_interface_is_found(host, reachable):
    child = subprocess.Popen(
        [sys.executable, "-c", _LISTEN, host], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        tcp_port, udp_port = map(int, child.stdout.readline().split())
        found = [x for x in listeners(process_tree()) if x.pid == child.pid]
        assert sorted((x.kind, x.port, x.ip) for x in found) == [
            ("tcp", tcp_port, host),
            ("udp", udp_port, host),
        ]
        assert len(exposed(found)) == (2 if reachable else 0)
    finally:
        child.stdin.close()
        child.wait(timeout=30)
