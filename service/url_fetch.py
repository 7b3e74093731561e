"""Fetch an image URL without letting the caller reach loopback, private or other internal hosts (SSRF).

The URL is parsed once, strictly, by this module (never by ``urlparse`` plus a second parser in the
HTTP client: the two disagreeing is how ``http://127.0.0.1:P\\@1.1.1.1/`` got through). The host is
resolved once, every address is checked, and the connection goes to the checked address itself, so
DNS rebinding between "check" and "connect" is impossible. Redirects are never followed.

Decisions: numeric IPv4 spellings other than canonical dotted-quad (``2130706433``, ``0177.0.0.1``,
``0x7f.1``, ``127.1``) are rejected, not normalised; raw non-ASCII hosts are rejected (give the
``xn--`` form; ASCII punycode is accepted as an ordinary name, its addresses are checked like any);
hosts with empty labels (including a trailing dot) are rejected; the fragment is dropped.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from urllib3.connection import HTTPConnection, HTTPSConnection

from errors import ApiError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list]

MAX_URL_CHARS = 4096
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")  # WHATWG: a host whose last label is this is an IPv4 number
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Belt and braces on top of ipaddress' flags, whose lists vary between Python patch releases.
_BLOCKED_V4 = ["0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15"]
_BLOCKED_V6 = ["::/8", "64:ff9b:1::/48", "100::/64", "2001::/32", "2001:db8::/32", "fc00::/7", "fec0::/10"]
_BLOCKED = tuple(ipaddress.ip_network(net) for net in _BLOCKED_V4 + _BLOCKED_V6)
_CA_CERTS: str | None = None  # tests point this at their own CA; None means the system store


class UrlRejected(ApiError):
    """The image URL cannot be fetched; ``status`` is 400 or 413 and the message is safe to show the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.message = message


@dataclass(frozen=True)
class ParsedUrl:
    scheme: str  # "http" or "https"
    host: str  # lower-case DNS name, canonical dotted-quad, or IPv6 address without brackets
    port: int
    path_and_query: str  # starts with "/", ASCII only

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def _bad(message: str) -> UrlRejected:
    return UrlRejected(400, message)


def parse_image_url(url: str) -> ParsedUrl:
    """Split ``url`` into scheme, host, port and path in one strict pass; anything odd is a 400."""
    if not isinstance(url, str) or not url:
        raise _bad("the image URL must be a non-empty string")
    if len(url) > MAX_URL_CHARS:
        raise _bad(f"the image URL is longer than {MAX_URL_CHARS} characters")
    if "\\" in url:
        raise _bad("image URLs may not contain a backslash")
    if any(char.isspace() or unicodedata.category(char)[0] == "C" for char in url):
        raise _bad("image URLs may not contain spaces, tabs, line breaks or other control characters")
    scheme, colon, rest = url.partition(":")
    if not colon or not scheme.isascii() or scheme.lower() not in _DEFAULT_PORTS:
        raise _bad("image URLs must start with http:// or https://")
    scheme = scheme.lower()
    if not rest.startswith("//"):
        raise _bad("image URLs must start with http:// or https:// followed by a host")
    rest = rest[2:].partition("#")[0]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    if "@" in authority:
        raise _bad("image URLs may not contain a user name or password (an @ before the host)")
    if "%" in authority:
        raise _bad("the image URL's host may not contain percent-encoded characters")
    if not authority.isascii():
        raise _bad("the image URL's host must be ASCII; write international names in their xn-- form")
    if authority.startswith("["):
        literal, bracket, port_text = authority[1:].partition("]")
        try:
            host = str(ipaddress.IPv6Address(literal if bracket else "no closing bracket"))
        except ValueError:
            raise _bad("the image URL's IPv6 address is malformed (write it as [address])") from None
        if port_text and not port_text.startswith(":"):
            raise _bad("the image URL has characters after its IPv6 address that are not a port")
        has_port, port_text = bool(port_text), port_text[1:]
    else:
        host, has_port_sep, port_text = authority.partition(":")
        has_port, host = bool(has_port_sep), _check_name(host.lower())
    port = _DEFAULT_PORTS[scheme]
    if has_port:
        if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 1 <= int(port_text) <= 65535:
            raise _bad("image URL port must be a number from 1 to 65535")
        port = int(port_text)
    path = "".join(char if char.isascii() else quote(char) for char in path)  # non-ASCII -> UTF-8 %XX
    return ParsedUrl(scheme, host, port, path if path.startswith("/") else "/" + path)


def _check_name(host: str) -> str:
    """A DNS name or canonical dotted-quad; other numeric spellings are what libc and browsers disagree on."""
    if not host:
        raise _bad("the image URL has no host")
    labels = host.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1] or (labels[-2] if len(labels) > 1 else "")):
        literal = _literal(host)
        if not isinstance(literal, ipaddress.IPv4Address) or str(literal) != host:  # ipaddress refuses leading zeros
            raise _bad("numeric image URL hosts must be four decimal numbers 0-255 without leading zeros, like 192.0.2.1")
        return host
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise _bad("the image URL's host is not a valid host name")
    return host


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_public(ip: IPAddress) -> bool:
    """Globally routable unicast. IPv6 forms that carry an IPv4 address are refused: mapped, compatible and
    NAT64 (64:ff9b::/96) fall in ::/8, Teredo in 2001::/32; 6to4 is allowed only if its IPv4 is public."""
    if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved:
        return False
    if ip.is_unspecified or not ip.is_global or any(ip in net for net in _BLOCKED if net.version == ip.version):
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local or ip.teredo:
            return False
        if ip.sixtofour is not None:
            return is_public(ip.sixtofour)
    return True


def resolve_public(host: str, port: int, allow_private: bool, resolver: Resolver = socket.getaddrinfo) -> list[IPAddress]:
    """Resolve ``host`` exactly once; refuse if ANY address is non-public, since the attacker picks which one is used."""
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = resolver(host, port, 0, socket.SOCK_STREAM)
        except (OSError, UnicodeError, ValueError):
            raise _bad(f"cannot resolve the image URL's host {host!r}") from None
        addresses = []
        for family, *_, sockaddr in infos:
            ip = _literal(str(sockaddr[0]).partition("%")[0]) if family in (socket.AF_INET, socket.AF_INET6) else None
            if ip is not None and ip not in addresses:
                addresses.append(ip)
        if not addresses:
            raise _bad(f"the image URL's host {host!r} has no IP addresses")
    if not allow_private and not all(is_public(ip) for ip in addresses):
        raise _bad("image URLs pointing to loopback, private, link-local or other non-public addresses are not allowed")
    return addresses


class _Watched:
    """Mixin: a timer shuts the socket down at the deadline, so a server dripping bytes cannot outlast it."""

    _expired = False
    _raw: socket.socket | None = None

    def _new_conn(self) -> socket.socket:
        self._raw = sock = super()._new_conn()  # type: ignore[misc]
        if self._expired:
            self.expire()
        return sock

    def expire(self) -> None:
        self._expired = True
        if self._raw is not None:
            with contextlib.suppress(OSError):  # shutdown wakes a blocked recv; close() from here could race fd reuse
                self._raw.shutdown(socket.SHUT_RDWR)


class _HTTP(_Watched, HTTPConnection): ...


class _HTTPS(_Watched, HTTPSConnection): ...


class _ConnectFailed(Exception): ...


def fetch_image_url(url: str, *, max_bytes: int, timeout_s: float, allow_private: bool = False, resolver: Resolver = socket.getaddrinfo) -> bytes:
    """GET the image with one resolution, a byte cap (413) and an overall deadline; every failure is a UrlRejected."""
    deadline = time.monotonic() + timeout_s
    parsed = parse_image_url(url)
    addresses = resolve_public(parsed.host, parsed.port, allow_private, resolver)
    for ip in addresses:  # all were checked; try the next only when the TCP connect itself fails
        try:
            return _fetch_from(ip, parsed, max_bytes, deadline)
        except _ConnectFailed:
            continue
    raise _bad("could not connect to the image URL's host")


def _fetch_from(ip: IPAddress, parsed: ParsedUrl, max_bytes: int, deadline: float) -> bytes:
    """Connect to ``ip`` itself (never re-resolving the name); a timer enforces the deadline on every phase."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _bad("fetching the image URL took too long")
    conn: _HTTP | _HTTPS
    if parsed.scheme == "https":  # connect to the checked IP, but verify the certificate for the URL's name
        conn = _HTTPS(
            str(ip), parsed.port, timeout=remaining, server_hostname=parsed.host, assert_hostname=parsed.host, cert_reqs="CERT_REQUIRED", ca_certs=_CA_CERTS
        )
    else:
        conn = _HTTP(str(ip), parsed.port, timeout=remaining)
    timer = threading.Timer(remaining, conn.expire)
    timer.daemon = True
    timer.start()
    try:
        try:
            conn.connect()
        except Exception as error:
            if conn._expired:
                raise _bad("fetching the image URL took too long") from None
            if conn._raw is None:
                raise _ConnectFailed() from error  # TCP failed: another checked address may work
            raise _bad(f"could not open a secure connection to the image URL's host ({type(error).__name__})") from None
        return _get(conn, parsed, max_bytes)
    except (UrlRejected, _ConnectFailed):
        raise
    except Exception as error:  # urllib3/http.client/ssl raise many types; the caller must only ever see a 400
        if conn._expired:
            raise _bad("fetching the image URL took too long") from None
        raise _bad(f"could not fetch the image URL ({type(error).__name__})") from None
    finally:
        timer.cancel()
        conn.close()


def _get(conn: Any, parsed: ParsedUrl, max_bytes: int) -> bytes:
    """One GET with Host set to the URL's host; identity encoding so the byte cap counts what we hold."""
    headers = {"Host": parsed.host_header, "Accept": "image/*", "Accept-Encoding": "identity", "User-Agent": "face-recognition-ood"}
    conn.request("GET", parsed.path_and_query, headers=headers, preload_content=False, decode_content=False)
    response = conn.getresponse()
    if 300 <= response.status < 400:
        raise _bad("the image URL redirected; give the final URL")
    if response.status != 200:
        raise _bad(f"fetching the image URL answered HTTP {response.status}")
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise UrlRejected(413, f"the image at the URL is larger than {max_bytes} bytes")
    data = bytearray()
    while chunk := response.read(64 * 1024):
        data += chunk
        if len(data) > max_bytes:
            raise UrlRejected(413, f"the image at the URL is larger than {max_bytes} bytes")
    if conn._expired:  # the watchdog's shutdown can look like a clean end of a body without Content-Length
        raise _bad("fetching the image URL took too long")
    return bytes(data)
