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


@pytest.mark.parametrize("name", ["example.com", "shop.example.invalid", "db.example.test.", b"example.org"])
def test_a_name_that_needs_a_dns_server_does_not_resolve_and_no_query_leaves(name):
    with pytest.raises(socket.gaierror, match="no names off this machine"):
        socket.getaddrinfo(name, 443)


@pytest.mark.parametrize(
    ("name", "address"),
    [("127.1", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("::1", "::1"), ("localhost", None), ("1.1.1.1", "1.1.1.1")],
)
def test_addresses_in_any_spelling_and_this_machines_names_still_resolve(name, address):
    answers = {info[4][0] for info in socket.getaddrinfo(name, 443, type=socket.SOCK_STREAM)}
    assert answers
    if address is not None:
        assert answers == {address}


@pytest.mark.parametrize("name", ["127.leak.example.com", "localhost.leak.example.com", "::1.example.com"])
def test_a_name_that_only_starts_like_loopback_is_not_connected_to(name):
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError, match="loopback"):
        sock.connect((name, 80))


@pytest.mark.parametrize("name", ["localhost.", "status.localhost", "status.localhost."])
def test_this_machines_other_names_are_answered_from_the_hosts_file(name):
    assert {info[4][0] for info in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)} <= {"127.0.0.1", "::1"}


def test_the_older_lookups_are_guarded_too():
    assert socket.gethostbyname("127.1") == "127.0.0.1"
    assert socket.gethostbyname("localhost") == "127.0.0.1"
    for lookup in (socket.gethostbyname, socket.gethostbyname_ex):
        with pytest.raises(socket.gaierror, match="no names off this machine"):
            lookup("example.com")
