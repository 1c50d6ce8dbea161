"""The suite's network seam: only loopback is reachable from a test."""

from __future__ import annotations

import socket

import pytest


def test_a_public_address_is_refused_before_any_packet():
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError, match="loopback"):
        sock.connect(("1.1.1.1", 443))


def test_loopback_stays_reachable():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.socket() as client:
            client.connect(server.getsockname())
