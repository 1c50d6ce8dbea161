"""The SSRF guard: the table of refused destinations, at create time (resolve_allowed) and at run time (run_check).

Numeric spellings (decimal, hex, octal, short forms) go through the real system
resolver, as they would in production: the guard must catch them by resolving,
not by parsing.  None of them needs the network.
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from chalicelib.checks import ssrf
from chalicelib.checks.http import run_check
from chalicelib.checks.model import CheckSpec

pytestmark = pytest.mark.usefixtures("as_a_team")

BLOCKED = [
    # loopback, in every spelling
    "http://127.0.0.1/",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://017700000001/",
    "http://127.255.255.254:8080/",
    "http://127.0.0.1:9001/2018-06-01/runtime/invocation/next",  # Lambda's runtime API
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "https://localhost/",
    "http://foo.localhost/",
    "http://LOCALHOST./",
    # private
    "http://10.0.0.1/",
    "http://10.255.255.255/",
    "http://172.16.0.1/",
    "http://172.31.255.254/",
    "http://192.168.1.1/",
    "http://[fc00::1]/",
    "http://[fd12:3456:789a::1]/",
    # link-local and cloud metadata
    "http://169.254.169.254/latest/meta-data/",
    "http://2852039166/",
    "http://0xa9fea9fe/",
    "http://0251.0376.0251.0376/",
    "http://169.254.1.1/",
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/",
    "http://[::ffff:169.254.169.254]/",
    # carrier-grade NAT
    "http://100.64.0.1/",
    "http://100.127.255.254/",
    # unspecified
    "http://0.0.0.0/",
    "http://0/",
    "http://[::]/",
    # multicast, broadcast, reserved
    "http://224.0.0.1/",
    "http://239.255.255.250/",
    "http://[ff02::1]/",
    "http://255.255.255.255/",
    "http://240.0.0.1/",
    # IETF, benchmarking and documentation ranges
    "http://192.0.0.8/",
    "http://198.18.0.1/",
    "http://192.0.2.1/",
    "http://198.51.100.7/",
    "http://203.0.113.9/",
    "http://[2001:db8::1]/",
    # NAT64 with a blocked IPv4 inside, and local-use NAT64
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[64:ff9b::a00:1]/",
    "http://[64:ff9b:1::1]/",
    # 6to4 with a blocked IPv4 inside
    "http://[2002:a9fe:a9fe::]/",
    "http://[2002:7f00:1::]/",
    "http://[2002:c0a8:101::1]/",
    # Teredo, IPv4-compatible and IPv4-translated forms
    "http://[2001::1]/",
    "http://[::127.0.0.1]/",
    "http://[::a9fe:a9fe]/",
    "http://[::ffff:0:7f00:1]/",
]

REFUSED_SYNTAX = [
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/_stats",
    "ftp://example.com/file",
    "dict://127.0.0.1:11211/stat",
    "javascript:alert(1)",
    "data:text/html,<h1>hi</h1>",
    "ldap://example.com/",
    "//example.com/",
    "http:///path-only",
    "http://user:secret@example.com/",
    "http://example.com:0/",
    "http://example.com:65536/",
    "http://example.com:port/",
    "http://exa mple.com/",
    "http://example.com/\r\nX-Injected: 1",
    "http://[fe80::1%25eth0]/",
    "http://[not-v6]/",
    "",
]

PUBLIC = [
    ("http://1.1.1.1/", ["1.1.1.1"]),
    ("https://8.8.8.8/dns-query", ["8.8.8.8"]),
    ("https://[2606:4700:4700::1111]/", ["2606:4700:4700::1111"]),
    ("http://[::ffff:1.1.1.1]/", ["::ffff:101:101"]),  # IPv4-mapped public: fine
    ("http://[64:ff9b::101:101]/", ["64:ff9b::101:101"]),  # NAT64 of a public address: fine
    ("http://[2002:101:101::1]/", ["2002:101:101::1"]),  # 6to4 of a public address: fine
]


class StubResolver:
    """Answers from a table and counts every question."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.answers[host])


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything opens a socket: a refused destination must never be dialled."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the checker opened a socket for a refused destination")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("url", BLOCKED)
def test_it_refuses_a_blocked_destination_at_create(url: str) -> None:
    with pytest.raises(ssrf.DestinationNotAllowed) as caught:
        ssrf.resolve_allowed(url, allow_private=False)
    message = str(caught.value)
    assert "cannot be monitored" in message
    for leaked in ("127.0.0.1", "169.254", "10.0.0", "::1", "192.168"):
        assert leaked not in message


@pytest.mark.parametrize("url", BLOCKED)
def test_it_refuses_a_blocked_destination_at_run_time_without_connecting(url: str, no_connections: None) -> None:
    result = run_check(CheckSpec(url=url, timeout_ms=2000), region="us-east-1", allow_private=False)
    assert (result.ok, result.error, result.status_code) == (False, "destination_not_allowed", None)
    assert result.timings.connect_ms == 0
    assert "127.0.0.1" not in (result.error_detail or "")
    assert "169.254" not in (result.error_detail or "")


def test_the_table_is_big_enough() -> None:
    assert len(BLOCKED) + len(REFUSED_SYNTAX) >= 40
    assert len(BLOCKED) >= 40


@pytest.mark.parametrize("url", REFUSED_SYNTAX)
def test_it_refuses_a_url_that_is_not_plain_http(url: str, no_connections: None) -> None:
    with pytest.raises(ValueError):
        ssrf.check_url_syntax(url)
    with pytest.raises(ssrf.DestinationNotAllowed):
        ssrf.resolve_allowed(url, allow_private=True)
    result = run_check(CheckSpec(url=url), region="us-east-1", allow_private=True)
    assert result.error == "destination_not_allowed"


@pytest.mark.parametrize(("url", "addresses"), PUBLIC)
def test_it_accepts_public_addresses(url: str, addresses: list[str]) -> None:
    assert ssrf.resolve_allowed(url, allow_private=False) == addresses


def test_it_accepts_a_name_whose_every_answer_is_public() -> None:
    resolver = StubResolver({"example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:10c8"]})
    assert ssrf.resolve_allowed("https://example.com/health", allow_private=False, resolver=resolver) == [
        "93.184.215.14",
        "2606:2800:21f:cb07:6820:80da:af6b:10c8",
    ]
    assert resolver.calls == ["example.com"]


@pytest.mark.parametrize(
    "answers",
    [
        ["1.1.1.1", "10.0.0.1"],
        ["10.0.0.1", "1.1.1.1"],
        ["2606:4700:4700::1111", "fd00:ec2::254"],
        ["8.8.8.8", "::ffff:169.254.169.254"],
        ["8.8.8.8", "not-an-address"],
    ],
)
def test_it_refuses_a_name_when_any_answer_is_blocked(answers: list[str]) -> None:
    resolver = StubResolver({"mixed.example": answers})
    with pytest.raises(ssrf.DestinationNotAllowed) as caught:
        ssrf.resolve_allowed("https://mixed.example/", allow_private=False, resolver=resolver)
    assert answers[0] not in str(caught.value)
    assert answers[1] not in str(caught.value)


def test_allow_private_lifts_the_range_check() -> None:
    resolver = StubResolver({"db.internal": ["10.0.0.5"]})
    assert ssrf.resolve_allowed("http://db.internal:8080/", allow_private=True, resolver=resolver) == ["10.0.0.5"]
    assert ssrf.resolve_allowed("http://127.0.0.1:8000/", allow_private=True) == ["127.0.0.1"]


def test_a_name_that_does_not_resolve_is_a_dns_failure_not_a_refusal() -> None:
    with pytest.raises(ssrf.DnsFailure):
        ssrf.resolve_allowed("https://nowhere.example/", allow_private=False, resolver=StubResolver({}))
    with pytest.raises(ssrf.DnsFailure):
        ssrf.resolve_allowed(
            "https://empty.example/", allow_private=False, resolver=StubResolver({"empty.example": []})
        )


def test_a_resolver_that_hangs_stops_at_the_timeout() -> None:
    def slow(host: str, port: int) -> list[str]:
        time.sleep(1.0)
        return ["1.1.1.1"]

    started = time.perf_counter()
    with pytest.raises(ssrf.DnsTimeout):
        ssrf.resolve_allowed("https://slow.example/", allow_private=False, resolver=slow, timeout=0.1)
    assert time.perf_counter() - started < 0.5


class HungServers:
    """A resolver whose servers for ``*.hung.example`` never answer, until the test lets them go; any other name
    answers 1.1.1.1 at once.  ``asked`` is every question, in order."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.asked: list[str] = []
        self._asked = threading.Condition()

    def __call__(self, host: str, port: int) -> list[str]:
        with self._asked:
            self.asked.append(host)
            self._asked.notify_all()
        if host.endswith(".hung.example"):
            self.released.wait(30)
            raise ssrf.DnsFailure(f"{host} does not resolve")
        return ["1.1.1.1"]

    def hang(self, look_up: Callable[[str], object], host: str) -> None:
        """``look_up(host)`` on a thread of the test (as the test's team), returning once the servers were asked:
        the lookup then holds a lookup thread, and its team's slot, until the servers are released."""

        def caller() -> None:
            with contextlib.suppress(ssrf.DnsFailure):
                look_up(host)

        threading.Thread(target=contextvars.copy_context().run, args=(caller,), daemon=True).start()
        with self._asked:
            assert self._asked.wait_for(lambda: host in self.asked, timeout=5), f"{host} was never looked up"


@pytest.fixture
def hung() -> Iterator[HungServers]:
    servers = HungServers()
    yield servers
    servers.released.set()  # the lookups still holding threads return, and their slots with them


def look_up_in(pool: ssrf._LookupThreads, servers: HungServers, team: str) -> Callable[[str], object]:
    """A caller of ``pool`` as ``team`` with all the time it needs (until the servers are released)."""
    return lambda host: pool.call(servers, host, 443, 30, team)


def eventually(holds: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + 5
    while not holds() and time.monotonic() < deadline:
        time.sleep(0.002)
    return holds()


def test_a_lookup_with_a_deadline_made_for_no_team_is_refused_as_a_programming_error() -> None:
    resolver = StubResolver({"shop.example": ["1.1.1.1"]})
    outside = contextvars.Context()  # code that never entered lookups_for()

    with pytest.raises(ssrf.UnattributedLookup, match=r"inside ssrf\.lookups_for\(team_id\)"):
        outside.run(ssrf.resolve_allowed, "https://shop.example/", allow_private=False, resolver=resolver)
    with pytest.raises(ssrf.UnattributedLookup):  # not a DnsFailure: a check cannot pass it off as dns_failure
        outside.run(run_check, CheckSpec(url="https://shop.example/"), region="eu-west-1", allow_private=False)
    assert resolver.calls == []

    # An address needs no lookup, and a lookup without a deadline no slot: neither needs a team.
    assert outside.run(ssrf.resolve_allowed, "https://1.1.1.1/", allow_private=False) == ["1.1.1.1"]
    assert outside.run(
        ssrf.resolve_allowed, "https://shop.example/", allow_private=False, resolver=resolver, timeout=None
    ) == ["1.1.1.1"]


def test_one_teams_hung_lookups_do_not_starve_another_teams_checks(hung: HungServers) -> None:
    look_up = lambda host: ssrf.resolve_allowed(f"https://{host}/", allow_private=False, resolver=hung)  # noqa: E731
    with ssrf.lookups_for("team-slow"):
        for i in range(ssrf.LOOKUPS_PER_TEAM):
            hung.hang(look_up, f"n{i}.hung.example")
        for i in range(16):  # the 16 threads every team used to share
            with pytest.raises(ssrf.DnsTimeout, match="this team's other lookups still wait on their DNS servers"):
                ssrf.resolve_allowed(f"https://m{i}.hung.example/", allow_private=False, resolver=hung, timeout=0.01)

    with ssrf.lookups_for("team-fine"):
        started = time.perf_counter()
        assert ssrf.resolve_allowed("https://fine.example/", allow_private=False, resolver=hung, timeout=1.0) == [
            "1.1.1.1"
        ]
    assert time.perf_counter() - started < 0.5
    assert ssrf._lookups.in_flight("team-slow") == ssrf.LOOKUPS_PER_TEAM  # its hung lookups hold only its slots
    assert [h for h in hung.asked if h.startswith("m")] == []  # past its slots, nothing more was even queued


def test_a_team_past_its_slots_waits_for_its_own_and_gets_them_back_when_its_servers_answer(
    hung: HungServers,
) -> None:
    with ssrf.lookups_for("team-a"):
        for i in range(ssrf.LOOKUPS_PER_TEAM):
            hung.hang(
                lambda host: ssrf.resolve_allowed(f"https://{host}/", allow_private=False, resolver=hung),
                f"h{i}.hung.example",
            )
        with pytest.raises(ssrf.DnsTimeout, match="this team's other lookups still wait on their DNS servers"):
            ssrf.resolve_allowed("https://fine.example/", allow_private=False, resolver=hung, timeout=0.05)

        hung.released.set()  # the servers answer at last: the team's slots come back
        assert eventually(lambda: ssrf._lookups.in_flight("team-a") == 0)
        assert ssrf.resolve_allowed("https://fine.example/", allow_private=False, resolver=hung, timeout=1.0) == [
            "1.1.1.1"
        ]


def test_sixteen_teams_with_four_hung_names_each_no_longer_fill_the_threads(hung: HungServers) -> None:
    """Teams are free and a user may make any number: filling the threads now takes 128 of them, each with four
    names whose servers never answer, at the same moment on the same worker (it took 16)."""
    assert ssrf.MAX_LOOKUP_THREADS // ssrf.LOOKUPS_PER_TEAM >= 128
    pool = ssrf._LookupThreads(ssrf.MAX_LOOKUP_THREADS, ssrf.LOOKUPS_PER_TEAM)
    for t in range(16):  # every thread there used to be
        for i in range(ssrf.LOOKUPS_PER_TEAM):
            hung.hang(look_up_in(pool, hung, f"team-{t}"), f"n{i}.t{t}.hung.example")

    assert pool.call(hung, "fine.example", 443, 0.5, "team-fine") == ["1.1.1.1"]


def test_the_lookup_threads_start_as_needed_and_stop_growing_at_their_cap(hung: HungServers) -> None:
    pool = ssrf._LookupThreads(size=3, per_team=100)
    for i in range(3):
        hung.hang(look_up_in(pool, hung, "t"), f"x{i}.hung.example")
    assert pool._threads == 3

    with pytest.raises(ssrf.DnsTimeout):
        pool.call(hung, "queued.example", 443, 0.01, "t")  # no thread takes it in time
    assert pool._threads == 3
    assert pool.in_flight("t") == 3  # the hung three; the queued one was dropped with its caller


def test_lookups_of_one_name_in_flight_together_are_one_lookup_in_one_slot(hung: HungServers) -> None:
    """A monitor on an expired domain (its servers never answer), checked again while its last lookups hang, holds
    one slot of its team, not all of them: the team's healthy monitors keep resolving."""
    pool = ssrf._LookupThreads(size=8, per_team=2)
    hung.hang(look_up_in(pool, hung, "team-a"), "expired.hung.example")
    for _ in range(3):  # the next checks of that monitor
        with pytest.raises(ssrf.DnsTimeout, match=r"did not finish in time$"):
            pool.call(hung, "expired.hung.example", 443, 0.01, "team-a")

    assert pool.in_flight("team-a") == 1
    assert pool.call(hung, "healthy.example", 443, 0.5, "team-a") == ["1.1.1.1"]
    assert hung.asked == ["expired.hung.example", "healthy.example"]


def test_a_lookup_is_shared_by_one_team_only(hung: HungServers) -> None:
    pool = ssrf._LookupThreads(size=8, per_team=2)
    hung.hang(look_up_in(pool, hung, "team-a"), "shared.hung.example")
    hung.hang(look_up_in(pool, hung, "team-b"), "shared.hung.example")

    assert eventually(lambda: (pool.in_flight("team-a"), pool.in_flight("team-b")) == (1, 1))
    assert eventually(lambda: hung.asked.count("shared.hung.example") == 2)


def test_a_queued_lookup_whose_callers_all_gave_up_is_dropped_and_its_slot_is_free_at_once(
    hung: HungServers,
) -> None:
    pool = ssrf._LookupThreads(size=1, per_team=1)
    hung.hang(look_up_in(pool, hung, "team-slow"), "x.hung.example")  # holds the only thread

    with pytest.raises(ssrf.DnsTimeout, match=r"did not finish in time$"):
        pool.call(hung, "gave-up.example", 443, 0.01, "team-fine")  # queued behind it, then given up
    assert pool.in_flight("team-fine") == 0  # while the thread still hangs

    hung.released.set()
    assert pool.call(hung, "live.example", 443, 1.0, "team-fine") == ["1.1.1.1"]
    assert hung.asked == ["x.hung.example", "live.example"]  # the lookup nobody waited for never ran


def test_a_queued_lookup_still_waited_for_runs_and_answers_its_caller(hung: HungServers) -> None:
    pool = ssrf._LookupThreads(size=1, per_team=1)
    hung.hang(look_up_in(pool, hung, "team-slow"), "x.hung.example")  # holds the only thread
    answers: list[object] = []
    waiting = threading.Thread(target=lambda: answers.append(pool.call(hung, "shop.example", 443, 5, "team-a")))
    waiting.start()
    assert eventually(lambda: pool.in_flight("team-a") == 1)  # queued, its caller waiting

    with pytest.raises(ssrf.DnsTimeout):
        pool.call(hung, "shop.example", 443, 0.01, "team-a")  # a second caller of it gives up
    assert pool.in_flight("team-a") == 1  # the first still waits: not dropped

    hung.released.set()
    waiting.join(5)
    assert answers == [["1.1.1.1"]]
    assert hung.asked.count("shop.example") == 1


def test_a_caller_with_no_time_left_queues_nothing() -> None:
    pool = ssrf._LookupThreads(size=1, per_team=1)
    resolver = StubResolver({"shop.example": ["1.1.1.1"]})

    for left in (0.0, -1.0):
        with pytest.raises(ssrf.DnsTimeout):
            pool.call(resolver, "shop.example", 443, left, "team-a")

    assert (pool.in_flight("team-a"), pool._threads) == (0, 0)
    assert resolver.calls == []


def test_a_lookup_thread_that_cannot_start_is_a_dns_failure_and_holds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process's thread or memory limit ("can't start new thread"): the check reports dns_failure, and the
    team's slot and the pool's count of threads stay as they were."""
    pool = ssrf._LookupThreads(size=2, per_team=1)
    start = threading.Thread.start

    def refused(thread: threading.Thread) -> None:
        if thread.name.startswith("vigil-dns"):
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", refused)
    with pytest.raises(ssrf.DnsFailure, match=r"no thread could be started to look shop\.example up"):
        pool.call(StubResolver({"shop.example": ["1.1.1.1"]}), "shop.example", 443, 1.0, "team-a")
    assert (pool.in_flight("team-a"), pool._threads, pool._idle) == (0, 0, 0)

    monkeypatch.setattr(threading.Thread, "start", start)  # the limit lifts: the team's one slot is there
    assert pool.call(StubResolver({"shop.example": ["1.1.1.1"]}), "shop.example", 443, 1.0, "team-a") == ["1.1.1.1"]


class ResolverCrash(BaseException):
    """Not an Exception: what SystemExit or a C extension's odd error would look like to the lookup thread."""


def test_a_resolver_raising_past_exception_is_a_dns_failure_and_its_thread_serves_the_next_lookup() -> None:
    pool = ssrf._LookupThreads(size=1, per_team=1)

    def crashing(host: str, port: int) -> list[str]:
        raise ResolverCrash

    with pytest.raises(ssrf.DnsFailure, match=r"the DNS lookup for shop\.example failed") as caught:
        pool.call(crashing, "shop.example", 443, 1.0, "team-a")
    assert isinstance(caught.value.__cause__, ResolverCrash)
    assert pool.in_flight("team-a") == 0

    assert pool.call(StubResolver({"shop.example": ["1.1.1.1"]}), "shop.example", 443, 1.0, "team-a") == ["1.1.1.1"]
    assert pool._threads == 1  # the same thread


def test_an_address_in_the_url_is_not_looked_up() -> None:
    resolver = StubResolver({})
    assert ssrf.resolve_allowed("http://1.1.1.1/", allow_private=False, resolver=resolver) == ["1.1.1.1"]
    assert resolver.calls == []


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("HTTP://Example.COM", "http://example.com/"),
        ("https://example.com:443/a?b=1#fragment", "https://example.com/a?b=1"),
        ("http://example.com:8080/x", "http://example.com:8080/x"),
        ("  https://example.com/padded  ", "https://example.com/padded"),
        ("http://bücher.example/", "http://xn--bcher-kva.example/"),
        ("http://example.com/café?q=ü", "http://example.com/caf%C3%A9?q=%C3%BC"),
        ("http://[2606:4700:4700:0:0:0:0:1111]:8443/", "http://[2606:4700:4700::1111]:8443/"),
    ],
)
def test_it_normalizes_urls(url: str, normalized: str) -> None:
    assert ssrf.check_url_syntax(url) == normalized


@pytest.mark.parametrize(
    ("ip", "blocked"),
    [
        ("127.0.0.1", True),
        ("::ffff:127.0.0.1", True),  # ipaddress alone does not call this loopback on 3.11
        ("100.64.0.1", True),  # nor this private
        ("64:ff9b::a9fe:a9fe", True),  # and calls this global
        ("fe80::1%eth0", True),
        ("[::1]", True),
        ("garbage", True),
        ("", True),
        ("1.1.1.1", False),
        ("2606:4700:4700::1111", False),
        ("64:ff9b::808:808", False),
    ],
)
def test_is_blocked_ip(ip: str, blocked: bool) -> None:
    assert ssrf.is_blocked_ip(ip) is blocked


def test_a_callers_lookups_cpu_on_the_lookup_threads_is_told_to_it() -> None:
    """The check worker sizes itself from its own CPU, and its DNS lookups run on threads the process shares
    (getaddrinfo has no timeout): each lookup's CPU there is told to the thread that waited for it."""

    def dear(host: str, port: int) -> list[str]:
        until = time.thread_time() + 0.05
        while time.thread_time() < until:
            pass
        return ["93.184.216.34"]

    pool = ssrf._LookupThreads(size=2, per_team=4)
    before = ssrf.lookups_cpu_s()
    assert pool.call(dear, "example.com", 443, 5.0, "team-a") == ["93.184.216.34"]
    assert pool.call(dear, "example.org", 443, 5.0, "team-a") == ["93.184.216.34"]
    assert ssrf.lookups_cpu_s() - before >= 0.1
    seen: list[float] = []
    other = threading.Thread(target=lambda: seen.append(ssrf.lookups_cpu_s()))
    other.start()
    other.join()
    assert seen == [0.0]  # another thread waited for none


def test_a_shared_lookups_cpu_is_told_to_one_of_its_callers_only() -> None:
    """Callers of one host at once share its lookup (single-flight): it ran once, and told to each of them, the
    check worker's messages counted its CPU once per caller (fresh-eyes review)."""
    joined = threading.Event()

    def dear(host: str, port: int) -> list[str]:
        joined.wait(5)
        until = time.thread_time() + 0.05
        while time.thread_time() < until:
            pass
        return ["93.184.216.34"]

    pool = ssrf._LookupThreads(size=2, per_team=4)
    told: list[float] = []

    def caller() -> None:
        assert pool.call(dear, "example.com", 443, 5.0, "team-a") == ["93.184.216.34"]
        told.append(ssrf.lookups_cpu_s())

    callers = [threading.Thread(target=caller) for _ in range(2)]
    for thread in callers:
        thread.start()
    assert eventually(lambda: [f.waiters for f in pool._flights.values()] == [2])
    joined.set()
    for thread in callers:
        thread.join()
    assert len(told) == 2
    assert 0.05 <= sum(told) < 0.08  # once (told twice: 0.1 and more)
