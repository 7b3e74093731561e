"""Image URLs (service.url_fetch): SSRF encodings against a real loopback listener, plus redirect/size/deadline/TLS.

Safety: an autouse guard makes any connect() to a non-loopback address, and any getaddrinfo() of a
non-numeric name, fail in-process before a packet is sent, so a bug can never reach the network.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from service import url_fetch
from service.url_fetch import UrlRejected, fetch_image_url, is_public, parse_image_url, resolve_public

BODY = b"\xff\xd8\xff\xe0 fake jpeg bytes"


# --------------------------------------------------------------------------- network guard
class Guard:
    def __init__(self) -> None:
        self.blocked_connects: list[tuple] = []
        self.blocked_lookups: list[str] = []
        self.loopback_connects: list[tuple] = []


@pytest.fixture(autouse=True)
def guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[Guard]:
    record = Guard()
    real_connect, real_connect_ex, real_gai = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def allowed(address) -> bool:
        try:
            return ipaddress.ip_address(str(address[0]).partition("%")[0]).is_loopback
        except ValueError:
            return False

    def connect(self, address):
        if not allowed(address):
            record.blocked_connects.append(address)
            raise OSError(101, "test guard: non-loopback connect blocked")
        record.loopback_connects.append(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        if not allowed(address):
            record.blocked_connects.append(address)
            return 101
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        try:
            ipaddress.ip_address(str(host))
        except ValueError:
            record.blocked_lookups.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "test guard: DNS lookups are blocked") from None
        return real_gai(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield record
    assert record.blocked_connects == [], "something tried to leave loopback"
    assert record.blocked_lookups == [], "something tried real DNS"


# --------------------------------------------------------------------------- fake resolvers
class FakeResolver:
    """Answers every name with ``answers`` (or ``later`` after the first call) and records the calls."""

    def __init__(self, answers: list[str], later: list[str] | None = None) -> None:
        self.answers, self.later, self.calls = answers, later, []

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        self.calls.append(host)
        ips = self.answers if len(self.calls) == 1 or self.later is None else self.later
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0)) if ":" in ip else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
            for ip in ips
        ]


def to_loopback() -> FakeResolver:
    return FakeResolver(["127.0.0.1"])


# --------------------------------------------------------------------------- listener
class Listener(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, behaviour: Callable, tls: ssl.SSLContext | None = None) -> None:
        self.behaviour, self.tls = behaviour, tls
        self.connections: list[tuple] = []
        self.requests: list[bytes] = []
        super().__init__(("127.0.0.1", 0), Handler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


class Handler(socketserver.BaseRequestHandler):
    server: Listener

    def handle(self) -> None:
        self.server.connections.append(self.client_address)
        sock = self.request
        sock.settimeout(3)
        try:
            if self.server.tls is not None:
                sock = self.server.tls.wrap_socket(sock, server_side=True)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
            self.server.requests.append(head)
            self.server.behaviour(sock, self.server)
        except (OSError, ssl.SSLError):
            pass


def respond(status: str, body: bytes = b"", extra: str = "", length: bool = True) -> Callable:
    def behaviour(sock, server) -> None:
        header = f"HTTP/1.1 {status}\r\n{extra}Connection: close\r\n"
        header += f"Content-Length: {len(body)}\r\n" if length else ""
        sock.sendall(header.encode() + b"\r\n" + body)

    return behaviour


def drip(prefix: bytes, piece: bytes) -> Callable:
    def behaviour(sock, server) -> None:
        sock.sendall(prefix)
        for _ in range(200):
            time.sleep(0.05)
            sock.sendall(piece)

    return behaviour


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener(respond("200 OK", BODY))
    yield server
    server.shutdown()
    server.server_close()


# --------------------------------------------------------------------------- SSRF encodings
REJECTED = [
    "http://127.0.0.1:{P}\\@1.1.1.1/face.jpg",  # the reported attack
    "http://1.1.1.1\\@127.0.0.1:{P}/",
    "http:\\\\127.0.0.1:{P}\\",
    "http:/\\127.0.0.1:{P}/",
    "http://127.0.0.1:{P}/a\\b",
    "http://1.1.1.1@127.0.0.1:{P}/",
    "http://127.0.0.1:{P}@1.1.1.1/",
    "http://user:pass@127.0.0.1:{P}/",
    "http://@127.0.0.1:{P}/",
    "http://127.0.0.1:{P}#@1.1.1.1/",
    "http://127.0.0.1:{P}?@1.1.1.1/",
    "http://2130706433:{P}/",
    "http://0177.0.0.1:{P}/",
    "http://0x7f.1:{P}/",
    "http://0x7f000001:{P}/",
    "http://0X7F.0.0.1:{P}/",
    "http://017700000001:{P}/",
    "http://127.1:{P}/",
    "http://127.0.1:{P}/",
    "http://127.0.0.1.:{P}/",
    "http://127.000.000.001:{P}/",
    "http://0x:{P}/",
    "http://127.0.0.1:{P}/",
    "http://127.0.0.2:{P}/",
    "HTTP://127.0.0.1:{P}/",
    "hTtP://127.0.0.1:{P}/",
    "http://localhost:{P}/",
    "http://LOCALHOST:{P}/",
    "http://127.0.0.1.nip.io:{P}/",
    "http://localtest.me:{P}/",
    "http://xn--80ak6aa92e.com:{P}/",
    "http://[::1]:{P}/",
    "http://[0:0:0:0:0:0:0:1]:{P}/",
    "http://[::ffff:127.0.0.1]:{P}/",
    "http://[::ffff:7f00:1]:{P}/",
    "http://[0:0:0:0:0:ffff:7f00:1]:{P}/",
    "http://[::127.0.0.1]:{P}/",
    "http://[2002:7f00:1::]:{P}/",
    "http://[64:ff9b::7f00:1]:{P}/",
    "http://[fe80::1%25lo]:{P}/",
    "http://[fe80::1]:{P}/",
    "http://[fc00::1]:{P}/",
    "http://[::]:{P}/",
    "http://0.0.0.0:{P}/",
    "http://0:{P}/",
    "http://10.0.0.1:{P}/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1:{P}/",
    "http://192.168.1.1:{P}/",
    "http://224.0.0.1:{P}/",
    "http://255.255.255.255:{P}/",
    "http://%31%32%37.0.0.1:{P}/",
    "http://127%2e0%2e0%2e1:{P}/",
    "http://localhost%00.example:{P}/",
    "http://127.0.0.1\t:{P}/",
    "http://127.0.\n0.1:{P}/",
    "http://127.0.0.1:{P}/\r\nX: y",
    " http://127.0.0.1:{P}/",
    "http://127.0.0.1\u200b:{P}/",
    "http://127。0。0。1:{P}/",
    "http://１２７.0.0.1:{P}/",
    "http://lоcalhost:{P}/",  # Cyrillic o
    "http://127.0.0.1:abc/",
    "http://127.0.0.1:99999/",
    "http://127.0.0.1:0/",
    "http://127.0.0.1:-1/",
    "http://127.0.0.1:/",
    "http://127.0.0.1:+{P}/",
    "http://127.0.0.1:{P}:{P}/",
    "http://::1:{P}/",
    "http://[/",
    "http://[::1/",
    "http://[::1]x/",
    "http://[127.0.0.1]:{P}/",
    "http://",
    "http:///x",
    "http://:{P}/",
    "http://..:{P}/",
    "http://a..b:{P}/",
    "http:127.0.0.1:{P}/",
    "http:/127.0.0.1:{P}/",
    "//127.0.0.1:{P}/",
    "127.0.0.1:{P}/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:{P}/_GET%20/",
    "ftp://127.0.0.1:{P}/",
    "javascript:alert(1)",
    "",
]


@pytest.mark.parametrize("template", REJECTED)
def test_rejected_without_any_connection(template: str, listener: Listener, guard: Guard) -> None:
    resolver = to_loopback()
    with pytest.raises(UrlRejected) as caught:
        fetch_image_url(template.replace("{P}", str(listener.port)), max_bytes=1 << 20, timeout_s=2, resolver=resolver)
    assert caught.value.status == 400
    message = str(caught.value)
    assert message and "\n" not in message and "Traceback" not in message
    assert listener.connections == [] and guard.loopback_connects == []


@pytest.mark.parametrize("value", [None, b"http://127.0.0.1/", 42, "h" * 5000])
def test_non_string_or_huge_input_is_400(value: object) -> None:
    with pytest.raises(UrlRejected) as caught:
        parse_image_url(value)  # type: ignore[arg-type]
    assert caught.value.status == 400


def test_reported_attack_message() -> None:
    with pytest.raises(UrlRejected, match="backslash"):
        parse_image_url("http://127.0.0.1:8080\\@1.1.1.1/face.jpg")
    with pytest.raises(UrlRejected, match="port must be a number from 1 to 65535"):
        parse_image_url("http://127.0.0.1:abc/")


def test_garbage_only_ever_raises_url_rejected() -> None:
    rng = random.Random(1234)
    alphabet = list("http:/[]@\\%.:0x7f1aA?#-_ \t\n\x00é。８") + ["http://", "https://", "[::", "0x", "%2e"]
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        try:
            parsed = parse_image_url(text)
        except UrlRejected as error:
            assert error.status == 400
        else:
            assert parsed.scheme in ("http", "https") and parsed.host and 1 <= parsed.port <= 65535
            assert parsed.path_and_query.startswith("/") and parsed.path_and_query.isascii()


# --------------------------------------------------------------------------- parsing and address rules
def test_parse_normalises() -> None:
    assert parse_image_url("HTTPS://Images.Example.COM/a/b.jpg?x=1#frag") == url_fetch.ParsedUrl("https", "images.example.com", 443, "/a/b.jpg?x=1")
    assert parse_image_url("http://[2001:4860:4860:0::8888]:8080?q").host == "2001:4860:4860::8888"
    assert parse_image_url("http://[2001:4860::1]:8080/").host_header == "[2001:4860::1]:8080"
    assert parse_image_url("http://example.com/é").path_and_query == "/%C3%A9"
    assert parse_image_url("http://8.8.8.8/").port == 80


@pytest.mark.parametrize(
    "address,public",
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("198.18.0.1", False),
        ("192.0.2.1", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("fec0::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", False),
        ("::127.0.0.1", False),
        ("2002:7f00:1::", False),
        ("2002:a00:1::", False),
        ("2002:808:808::", True),
        ("64:ff9b::7f00:1", False),
        ("64:ff9b::808:808", False),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),
        ("2001:db8::1", False),
    ],
)
def test_is_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


def test_resolve_refuses_if_any_address_private() -> None:
    resolver = FakeResolver(["8.8.8.8", "127.0.0.1"])
    with pytest.raises(UrlRejected, match="non-public"):
        resolve_public("rebind.example", 80, False, resolver)
    assert resolver.calls == ["rebind.example"]
    assert resolve_public("pub.example", 80, False, FakeResolver(["8.8.8.8", "2606:4700::1"])) == [
        ipaddress.ip_address("8.8.8.8"),
        ipaddress.ip_address("2606:4700::1"),
    ]


def test_resolver_errors_become_400() -> None:
    def broken(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "nope")

    with pytest.raises(UrlRejected, match="cannot resolve"):
        resolve_public("nowhere.example", 80, False, broken)
    with pytest.raises(UrlRejected, match="no IP addresses"):
        resolve_public("empty.example", 80, False, FakeResolver([]))


def test_rebinding_public_then_loopback_in_one_answer(listener: Listener, guard: Guard) -> None:
    resolver = FakeResolver(["8.8.8.8", "127.0.0.1"])
    with pytest.raises(UrlRejected) as caught:
        fetch_image_url(f"http://rebind.example:{listener.port}/", max_bytes=1000, timeout_s=2, resolver=resolver)
    assert caught.value.status == 400 and resolver.calls == ["rebind.example"]
    assert listener.connections == [] and guard.loopback_connects == []


def test_single_resolution_connects_to_checked_address(listener: Listener, guard: Guard) -> None:
    """The name is resolved once; a different later answer is never used (loopback-only variant)."""
    resolver = FakeResolver(["127.0.0.1"], later=["127.0.0.9"])
    data = fetch_image_url(f"http://images.test:{listener.port}/a.jpg?s=1", max_bytes=1000, timeout_s=2, allow_private=True, resolver=resolver)
    assert data == BODY and resolver.calls == ["images.test"]
    assert [address[0] for address in guard.loopback_connects] == ["127.0.0.1"]
    assert listener.requests[0].startswith(b"GET /a.jpg?s=1 HTTP/1.1\r\n")
    assert f"\r\nHost: images.test:{listener.port}\r\n".encode() in listener.requests[0]


# --------------------------------------------------------------------------- allow_private behaviour
def serve(behaviour: Callable, tls: ssl.SSLContext | None = None) -> Listener:
    return Listener(behaviour, tls)


def test_happy_path(listener: Listener) -> None:
    data = fetch_image_url(f"http://127.0.0.1:{listener.port}/face.jpg", max_bytes=1000, timeout_s=2, allow_private=True)
    assert data == BODY and len(listener.connections) == 1


def test_redirect_is_400_and_not_followed() -> None:
    server = serve(lambda sock, srv: respond("302 Found", extra=f"Location: http://127.0.0.1:{srv.port}/other\r\n")(sock, srv))
    try:
        with pytest.raises(UrlRejected, match="redirected; give the final URL") as caught:
            fetch_image_url(f"http://public-looking.example:{server.port}/", max_bytes=1000, timeout_s=2, allow_private=True, resolver=to_loopback())
        assert caught.value.status == 400 and len(server.connections) == 1
    finally:
        server.shutdown(), server.server_close()


def test_non_200_is_400() -> None:
    server = serve(respond("404 Not Found", b"nope"))
    try:
        with pytest.raises(UrlRejected, match="HTTP 404") as caught:
            fetch_image_url(f"http://127.0.0.1:{server.port}/", max_bytes=1000, timeout_s=2, allow_private=True)
        assert caught.value.status == 400
    finally:
        server.shutdown(), server.server_close()


@pytest.mark.parametrize("declare_length", [True, False])
def test_size_cap_is_413(declare_length: bool) -> None:
    server = serve(respond("200 OK", b"x" * 300_000, length=declare_length))
    try:
        with pytest.raises(UrlRejected) as caught:
            fetch_image_url(f"http://127.0.0.1:{server.port}/", max_bytes=100_000, timeout_s=2, allow_private=True)
        assert caught.value.status == 413
        assert fetch_image_url(f"http://127.0.0.1:{server.port}/", max_bytes=300_000, timeout_s=2, allow_private=True) == b"x" * 300_000
    finally:
        server.shutdown(), server.server_close()


@pytest.mark.parametrize(
    "behaviour",
    [
        drip(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", b"x"),  # body trickles
        drip(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", b"x"),
        drip(b"HTTP/1.1 200 OK\r\n", b"X-Slow: 1\r\n"),  # headers trickle
        lambda sock, srv: time.sleep(3),  # says nothing
    ],
    ids=["body-no-length", "body-with-length", "headers", "silent"],
)
def test_slow_server_hits_deadline(behaviour: Callable) -> None:
    server = serve(behaviour)
    try:
        started = time.monotonic()
        with pytest.raises(UrlRejected, match="took too long") as caught:
            fetch_image_url(f"http://127.0.0.1:{server.port}/", max_bytes=1 << 20, timeout_s=0.5, allow_private=True)
        assert caught.value.status == 400 and time.monotonic() - started < 1.5
    finally:
        server.shutdown(), server.server_close()


def test_closed_port_is_400() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UrlRejected, match="could not connect") as caught:
        fetch_image_url(f"http://127.0.0.1:{port}/", max_bytes=1000, timeout_s=2, allow_private=True)
    assert caught.value.status == 400


# --------------------------------------------------------------------------- TLS verifies the URL's name
@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    try:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-keyout",
                key,
                "-out",
                cert,
                "-subj",
                "/CN=images.test",
                "-addext",
                "subjectAltName=DNS:images.test",
            ],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("openssl is not available")
    return cert, key


@pytest.mark.parametrize("name,ok", [("images.test", True), ("other.test", False)])
def test_https_connects_to_ip_but_verifies_name(name: str, ok: bool, certificate, monkeypatch, guard: Guard) -> None:
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    sni: list[str | None] = []
    context.sni_callback = lambda sock, server_name, ctx: sni.append(server_name)
    monkeypatch.setattr(url_fetch, "_CA_CERTS", cert)
    server = serve(respond("200 OK", BODY), tls=context)
    try:
        url = f"https://{name}:{server.port}/face.jpg"
        if ok:
            assert fetch_image_url(url, max_bytes=1000, timeout_s=2, allow_private=True, resolver=to_loopback()) == BODY
            assert f"\r\nHost: {name}:{server.port}\r\n".encode() in server.requests[0]
        else:
            with pytest.raises(UrlRejected, match="secure connection") as caught:
                fetch_image_url(url, max_bytes=1000, timeout_s=2, allow_private=True, resolver=to_loopback())
            assert caught.value.status == 400 and not any(server.requests)  # handshake only, no HTTP request
        assert [address[0] for address in guard.loopback_connects] == ["127.0.0.1"] and sni == [name]
    finally:
        server.shutdown(), server.server_close()


def test_https_untrusted_certificate_is_400(certificate, guard: Guard) -> None:
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = serve(respond("200 OK", BODY), tls=context)
    try:
        with pytest.raises(UrlRejected, match="secure connection"):
            fetch_image_url(f"https://images.test:{server.port}/", max_bytes=1000, timeout_s=2, allow_private=True, resolver=to_loopback())
    finally:
        server.shutdown(), server.server_close()
