"""The SSRF guard: which URLs a monitor may target, and which addresses the checker may connect to.

A monitor URL is user input that our servers fetch, so it must never reach the
cloud's metadata service, the Lambda runtime API on 127.0.0.1:9001, or anything
else on a private network.  The guard therefore:

1. accepts only ``http``/``https`` URLs with a host and no credentials;
2. resolves the host (every A and AAAA answer) and refuses the URL if ANY answer
   is blocked — numeric spellings such as ``2130706433`` or ``0x7f000001`` are
   caught here, by resolving them, not by parsing them ourselves;
3. returns the validated addresses, which the checker then connects to directly,
   so a second DNS answer (rebinding) can never be used.

``is_blocked_ip`` unwraps IPv4-mapped, NAT64 and 6to4 forms and checks the
result against explicit networks, then against ``ipaddress``'s own notion of
"global" as a second net: on Python 3.11 ``is_private`` alone misses
``::ffff:127.0.0.1``, ``100.64.0.1`` and ``64:ff9b::a9fe:a9fe``.
"""

from __future__ import annotations

import ipaddress
import queue
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit, urlunsplit

Resolver = Callable[[str, int], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
MAX_HOST_LENGTH = 253  # a DNS name's longest
DEFAULT_PORTS = {"http": 80, "https": 443}
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~-._"
_UNSAFE_CHAR = re.compile(r"[\x00-\x20\x7f]")
_HOST_NAME = re.compile(r"[a-z0-9._-]+")

BLOCKED_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network", 0.0.0.0 reaches the local host on Linux
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT (shared address space)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, the cloud metadata service 169.254.169.254
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, 255.255.255.255 broadcast
    )
)
BLOCKED_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/96",  # unspecified, loopback and the deprecated IPv4-compatible ::a.b.c.d
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/32",  # Teredo: tunnels to an address we cannot vet
        "2001:2::/48",  # benchmarking
        "2001:10::/28",  # ORCHID
        "2001:20::/28",  # ORCHIDv2
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing SIDs
        "fc00::/7",  # unique local, incl. AWS's fd00:ec2::254 metadata and DNS
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

MAX_LOOKUP_THREADS = 512  # started as lookups need them; parked, each holds ~16 KiB (Lambda allows 1,024 threads)
LOOKUPS_PER_TEAM = 4  # one team's lookups in flight on a worker, hung ones included
DNS_TIMEOUT_S = 5.0  # for callers without a deadline of their own (the API at create and update)


class DestinationNotAllowed(Exception):
    """The URL may not be checked.  The message never names a resolved address."""


class DnsFailure(Exception):
    """The host name does not resolve (now); the check reports ``dns_failure``."""


class DnsTimeout(DnsFailure):
    """The resolver did not answer before the check's deadline."""


class UnattributedLookup(RuntimeError):
    """A lookup with a deadline made outside :func:`lookups_for`: a programming error, never a check's outcome."""


def check_url_syntax(url: str) -> str:
    """Return ``url`` normalized (lower-case scheme and host, IDNA, a path), or raise ValueError.

    Refused: schemes other than http/https, a missing host, credentials in the URL
    (they would be sent to every redirect target; a header is the place for them),
    a port outside 1-65535, IPv6 zone ids, whitespace and control characters.
    """
    url = url.strip()
    if not url:
        raise ValueError("a URL is required")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if _UNSAFE_CHAR.search(url):
        raise ValueError("the URL contains whitespace or control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError("only http and https URLs can be monitored")
    if "@" in parts.netloc:
        raise ValueError("the URL must not carry credentials; send them in a header instead")
    host = parts.hostname
    if not host:
        raise ValueError("the URL has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the URL's port must be a number between 1 and 65535") from None
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("the URL's port must be a number between 1 and 65535")
    host = _normalize_host(host)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    # Non-ASCII in the path or query is percent-encoded (the request line is ASCII); the rest is kept as written.
    path = quote(parts.path or "/", safe=_URL_SAFE)
    return urlunsplit((scheme, netloc, path, quote(parts.query, safe=_URL_SAFE), ""))


def _normalize_host(host: str) -> str:
    if "%" in host:
        raise ValueError("IPv6 zone identifiers are not allowed")
    if ":" in host:
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError("the host is not a valid IPv6 address") from None
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError("the host is not a valid host name") from None
    if not _HOST_NAME.fullmatch(ascii_host):
        raise ValueError("the host is not a valid host name")
    return ascii_host


def check_host(host: str) -> str:
    """A TCP monitor's host — a name, or an IPv4 or IPv6 address (brackets allowed) — normalized as a URL's host
    is; ``ValueError`` for one that cannot be (pydantic's message)."""
    name = host.strip()
    bracketed = name.startswith("[") and name.endswith("]")
    if bracketed:
        name = name[1:-1]
        if ":" not in name:
            raise ValueError("the host is not a valid IPv6 address")
    if not name:
        raise ValueError("must not be empty")
    normalized = _normalize_host(name)
    if len(normalized) > MAX_HOST_LENGTH:  # a Unicode name grows in its IDNA form
        raise ValueError(f"the host is longer than {MAX_HOST_LENGTH} characters in its IDNA form")
    return normalized


def host_and_port(url: str) -> tuple[str, int]:
    """The host (without IPv6 brackets) and port of a normalized URL."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or DEFAULT_PORTS[parts.scheme]


def resolve_allowed(
    url: str,
    *,
    allow_private: bool,
    resolver: Resolver | None = None,
    timeout: float | None = DNS_TIMEOUT_S,
    is_blocked: Callable[[str], bool] | None = None,
) -> list[str]:
    """Resolve the URL's host and return its addresses if every one of them may be contacted.

    Raises :class:`DestinationNotAllowed` (bad scheme/URL, or any blocked answer),
    or :class:`DnsFailure` when the name does not resolve (``DnsTimeout`` past ``timeout`` seconds;
    ``None`` looks up on the calling thread, with only the system resolver's own limits).  A lookup with a
    ``timeout`` counts against a team's slots: it must be made inside :func:`lookups_for`, else
    :class:`UnattributedLookup`.
    ``allow_private`` lifts the range check (the local stage only, see ``Settings.allow_private_targets``).
    ``is_blocked`` replaces the address policy; tests use it to let a second loopback address play a
    public host, since no test may connect off this machine.
    """
    try:
        url = check_url_syntax(url)
    except ValueError as exc:
        raise DestinationNotAllowed(str(exc)) from None
    host, port = host_and_port(url)
    return resolve_host(
        host, port, allow_private=allow_private, resolver=resolver, timeout=timeout, is_blocked=is_blocked
    )


def resolve_host(
    host: str,
    port: int,
    *,
    allow_private: bool,
    resolver: Resolver | None = None,
    timeout: float | None = None,
    is_blocked: Callable[[str], bool] | None = None,
) -> list[str]:
    """:func:`resolve_allowed` for the host and port of a URL that ``check_url_syntax`` already normalized."""
    name = host.rstrip(".")
    if not allow_private and (name == "localhost" or name.endswith(".localhost")):
        # RFC 6761: these names mean this machine, whatever a DNS server might answer.
        raise DestinationNotAllowed("the host is this machine, which cannot be monitored")
    addresses = _resolve(host, port, resolver or system_resolver, timeout)
    if not allow_private:
        blocked = is_blocked or is_blocked_ip
        if any(blocked(a) for a in addresses):
            raise DestinationNotAllowed(
                "the host resolves to a private, loopback, link-local or reserved address, which cannot be monitored"
            )
    return addresses


def _resolve(host: str, port: int, resolver: Resolver, timeout: float | None) -> list[str]:
    literal = _literal(host)
    if literal is not None:
        return [str(literal)]  # an address in the URL needs no lookup
    if timeout is None:
        answers = _call_resolver(resolver, host, port)
    else:  # on a lookup thread, so the caller can stop waiting at its deadline; in its team's slots
        team = _team.get()
        if not team:
            raise UnattributedLookup(
                f"the DNS lookup for {host} has a deadline but no team: make it inside ssrf.lookups_for(team_id)"
            )
        answers = _lookups.call(resolver, host, port, timeout, team)
    unique = list(dict.fromkeys(a.split("%", 1)[0] for a in answers))
    if not unique:
        raise DnsFailure(f"{host} has no A or AAAA record")
    return unique


def _call_resolver(resolver: Resolver, host: str, port: int) -> list[str]:
    try:
        return resolver(host, port)
    except DnsFailure:
        raise
    except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
        raise DnsFailure(f"{host} does not resolve") from exc


def system_resolver(host: str, port: int) -> list[str]:
    """Every A and AAAA answer for ``host``, in the system resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]


@dataclass(eq=False)
class _Lookup:
    """One lookup in flight: its callers (all of one team, for one host and port) wait for its ``done``."""

    key: tuple[str, int, str, int]  # (team, the resolver's id, host, port)
    resolver: Resolver
    host: str
    port: int
    waiters: int = 1
    started: bool = False  # a thread took it: it runs to its end, waited for or not
    cancelled: bool = False  # every caller gave up before a thread took it: it never runs
    outcome: list[str] | BaseException = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    cpu_s: float = 0.0  # its thread's CPU since the lookup before it there: its wake-up and the lookup

    @property
    def team(self) -> str:
        return self.key[0]


class _LookupThreads:
    """Threads that run lookups, so a check can stop waiting at its deadline (getaddrinfo has no timeout).

    A lookup that outlives its caller finishes on its thread and is discarded, so a name whose servers never
    answer holds a thread for the resolver's own timeouts (tens of seconds), long after its check gave up.  One
    team's slow names must not starve everyone else's checks on the same worker, hence, for each call:

    1. a lookup of the same host and port already in flight for the caller's team is waited for, not repeated
       (single-flight): one monitor on a dead name, checked again while its last lookup hangs, holds one slot;
    2. otherwise the caller takes one of its team's :data:`LOOKUPS_PER_TEAM` slots, waiting for one until its
       deadline (then ``DnsTimeout``, saying why); a caller with no time left queues nothing;
    3. the lookup is queued for a thread; threads start on demand, up to :data:`MAX_LOOKUP_THREADS`, so a thread
       held by a hung lookup is replaced rather than waited for; a thread that cannot start is a ``DnsFailure``
       and counts nothing;
    4. the caller waits until its deadline; the last caller to give up on a lookup no thread has taken yet
       cancels it: its slot is free at once, and the thread that takes it skips it;
    5. a lookup a thread runs holds its slot until it returns, answered or not, and every caller still waiting
       gets its answer; whatever the resolver raises that is not an ``Exception`` is a ``DnsFailure`` (the
       thread lives on).

    A ThreadPoolExecutor would still need the slots and the sharing kept beside it; the bookkeeping is all here.
    """

    def __init__(self, size: int, per_team: int) -> None:
        self._size = size
        self._per_team = per_team
        self._jobs: queue.SimpleQueue[_Lookup] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self._flights: dict[tuple[str, int, str, int], _Lookup] = {}
        self._in_flight: dict[str, int] = {}
        self._threads = 0
        self._idle = 0  # threads minus queued lookups: below zero, lookups wait for a thread

    def call(self, resolver: Resolver, host: str, port: int, timeout: float, team: str) -> list[str]:
        if timeout <= 0:
            raise DnsTimeout(f"the DNS lookup for {host} did not finish in time")
        deadline = time.monotonic() + timeout
        lookup = self._join_or_queue((team, id(resolver), host, port), resolver, deadline)
        if not lookup.done.wait(max(deadline - time.monotonic(), 0.0)):
            self._give_up(lookup)
            raise DnsTimeout(f"the DNS lookup for {host} did not finish in time")
        with self._lock:  # told once: every caller of a shared lookup waited for it, one thread ran it
            cpu_s, lookup.cpu_s = lookup.cpu_s, 0.0
        _waited.cpu_s = getattr(_waited, "cpu_s", 0.0) + cpu_s
        if isinstance(lookup.outcome, BaseException):
            raise lookup.outcome  # the same instance for every caller, as a Future raises it
        return list(lookup.outcome)

    def in_flight(self, team: str) -> int:
        """The team's slots held: its lookups queued or running."""
        with self._lock:
            return self._in_flight.get(team, 0)

    def _join_or_queue(self, key: tuple[str, int, str, int], resolver: Resolver, deadline: float) -> _Lookup:
        team, _, host, port = key
        with self._freed:
            while (shared := self._flights.get(key)) is None and self._in_flight.get(team, 0) >= self._per_team:
                left = deadline - time.monotonic()
                if left <= 0 or not self._freed.wait(left):
                    raise DnsTimeout(
                        f"the DNS lookup for {host} did not finish in time: this team's other lookups still"
                        " wait on their DNS servers"
                    )
            if shared is not None:
                shared.waiters += 1
                return shared
            if self._idle <= 0 and self._threads < self._size:
                self._start_thread(host)
            lookup = _Lookup(key, resolver, host, port)
            self._flights[key] = lookup
            self._in_flight[team] = self._in_flight.get(team, 0) + 1
            self._idle -= 1  # this lookup's thread, whichever takes it
        self._jobs.put(lookup)
        return lookup

    def _start_thread(self, host: str) -> None:
        thread = threading.Thread(target=self._work, name=f"vigil-dns-{self._threads + 1}", daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread": the process's thread or memory limit
            raise DnsFailure(f"no thread could be started to look {host} up") from exc
        self._threads += 1
        self._idle += 1

    def _give_up(self, lookup: _Lookup) -> None:
        with self._freed:
            lookup.waiters -= 1
            if lookup.waiters == 0 and not lookup.started:
                lookup.cancelled = True
                self._release(lookup)

    def _release(self, lookup: _Lookup) -> None:
        """The lookup's slot back to its team (under the lock)."""
        if self._flights.get(lookup.key) is lookup:
            del self._flights[lookup.key]
        left = self._in_flight[lookup.team] - 1
        if left:
            self._in_flight[lookup.team] = left
        else:
            del self._in_flight[lookup.team]
        self._freed.notify_all()

    def _work(self) -> None:
        spent = time.thread_time()
        while True:
            lookup = self._jobs.get()
            with self._lock:
                if lookup.cancelled:  # its slot went back with its last caller
                    self._idle += 1
                    continue
                lookup.started = True
            lookup.outcome = _outcome(lookup)
            with self._freed:
                self._idle += 1
                self._release(lookup)
            lookup.cpu_s, spent = time.thread_time() - spent, time.thread_time()
            lookup.done.set()


def _outcome(lookup: _Lookup) -> list[str] | BaseException:
    try:
        return _call_resolver(lookup.resolver, lookup.host, lookup.port)
    except Exception as exc:  # noqa: BLE001 - handed to the callers, who raise it
        return exc
    except BaseException as exc:  # noqa: BLE001 - the thread serves the next lookup; the callers get a DnsFailure
        failure = DnsFailure(f"the DNS lookup for {lookup.host} failed")
        failure.__cause__ = exc
        return failure


_team: ContextVar[str] = ContextVar("ssrf_team", default="")
_waited = threading.local()


def lookups_cpu_s() -> float:
    """The CPU (s) the lookups this thread waited for took on their own threads, all told: added to the thread's own
    CPU, what its checks cost the process (the check worker measures itself by it)."""
    return float(getattr(_waited, "cpu_s", 0.0))


@contextmanager
def lookups_for(team_id: str) -> Iterator[None]:
    """The lookups made inside count against ``team_id``'s slots (see :class:`_LookupThreads`); one with a deadline
    made outside any raises :class:`UnattributedLookup`."""
    token = _team.set(team_id)
    try:
        yield
    finally:
        _team.reset(token)


_lookups = _LookupThreads(MAX_LOOKUP_THREADS, LOOKUPS_PER_TEAM)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_blocked_ip(ip: str) -> bool:
    """True if the checker must not connect to ``ip`` (an address string as a resolver returns it)."""
    address = _literal(ip.strip("[]").split("%", 1)[0])
    if address is None:
        return True  # not an address at all: refuse rather than guess
    address = unwrap(address)
    if isinstance(address, ipaddress.IPv4Address):
        if any(address in net for net in BLOCKED_V4):
            return True
    elif any(address in net for net in BLOCKED_V6):
        return True
    return not address.is_global or address.is_multicast


def unwrap(address: IPAddress) -> IPAddress:
    """The IPv4 address carried inside an IPv4-mapped, NAT64 (64:ff9b::/96) or 6to4 IPv6 address."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return address
