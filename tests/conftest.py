from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from demo.sink import RecordingHandler, start_sink
from directory.models import Account, Domain, OrgUnit
from gateways.models import SmtpServer
from policy.models import OutboundPolicy

from .fault_peer import FaultPeer, Script
from .services import missing

try:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

PASSWORD = "correct horse battery"
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- no public DNS -------------------------------------------------------------------------------


class OfflineResolver:
    """Answers nothing: tests never query a real name server (traffic stays on loopback)."""

    def resolve(self, qname, rdtype, lifetime=None, **kwargs):
        import dns.exception

        raise dns.exception.Timeout(timeout=0)


@pytest.fixture(autouse=True)
def no_public_dns(monkeypatch):
    """Every test starts offline; a test that needs answers injects its own table."""
    from mailkit import dns as sendgate_dns

    monkeypatch.setattr(sendgate_dns, "default_resolver", OfflineResolver)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


def _loopback_only(method):
    def guarded(sock, address, *args):
        target = address if method.__name__ == "connect" else (args[-1] if args else address)
        host = target[0] if isinstance(target, tuple) else None
        if host is not None and not _is_loopback(host):
            raise OSError(f"tests may only reach loopback addresses, not {host}")
        return method(sock, address, *args)

    return guarded


@pytest.fixture(autouse=True)
def no_kept_smtp_sessions():
    """Sessions a test's deliveries kept open (mailkit.smtp_pool) end with the test: the next
    test starts with none, as a freshly started worker would."""
    from mailkit.smtp_pool import worker_loop

    yield worker_loop
    worker_loop.close()


@pytest.fixture(autouse=True)
def client_login_with_a_request(monkeypatch):
    """django-axes checks every authenticate() against the client's address, so it needs the
    request; Django's test Client.login() passes none. Give it one from 127.0.0.1, so a test's
    wrong passwords count (and lock) as a browser's would."""
    from django.test import Client, RequestFactory

    original = Client.login

    def login(self, **credentials):
        credentials.setdefault("request", RequestFactory().post("/login/"))
        return original(self, **credentials)

    monkeypatch.setattr(Client, "login", login)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Fail loudly if a test in this process tries to reach any address but loopback."""
    monkeypatch.setattr(socket.socket, "connect", _loopback_only(socket.socket.connect))
    monkeypatch.setattr(socket.socket, "sendto", _loopback_only(socket.socket.sendto))


# --- certificates and SMTP peers ----------------------------------------------------------------


@dataclass
class Pki:
    ca: trustme.CA
    ca_file: str
    server_context: object  # ssl.SSLContext for "localhost"


def _pki(name: str) -> Pki:
    ca = trustme.CA()
    ca_file = Path(django_settings.VAR_DIR) / f"{name}-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1", "::1").configure_cert(context)
    return Pki(ca=ca, ca_file=str(ca_file), server_context=context)


@pytest.fixture(scope="session")
def pki() -> Pki:
    """The CA that Sendgate is told to trust, and a server certificate it issued."""
    return _pki("trusted")


@pytest.fixture(scope="session")
def untrusted_pki() -> Pki:
    """A CA Sendgate knows nothing about: its certificates must not verify."""
    return _pki("untrusted")


@pytest.fixture
def trust_test_ca(settings, pki: Pki) -> Pki:
    settings.SENDGATE_EXTRA_CA_FILE = pki.ca_file
    settings.SENDGATE_SMTP_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
    settings.SENDGATE_SMTP_ALLOWED_PORTS = ["1024-65535"]  # test peers use free high ports
    return pki


@dataclass
class Peer:
    host: str
    port: int
    login: str
    password: str
    handler: RecordingHandler

    @property
    def messages(self):
        return self.handler.messages


@pytest.fixture
def smtp_peer(pki: Pki) -> Iterator:
    """Start SMTP servers on loopback that require TLS and AUTH, and record what they receive."""
    controllers = []

    def start(
        login: str = "user@peer.test",
        password: str = "peer-password",
        *,
        implicit_tls: bool = False,
        offer_starttls: bool = True,
        tls=None,
    ) -> Peer:
        port = free_port()
        controller, handler = start_sink(
            host="127.0.0.1",
            port=port,
            tls_context=tls or pki.server_context,
            users={login: password},
            implicit_tls=implicit_tls,
            offer_starttls=offer_starttls,
        )
        controllers.append(controller)
        return Peer("localhost", port, login, password, handler)

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def mx_peer(pki: Pki) -> Iterator:
    """Start receiving mail servers (aiosmtpd) on loopback, as a recipient domain's MX would be:
    no AUTH, STARTTLS offered (with ``tls``, default: a trusted certificate for localhost) or not
    at all (``tls=False``). Each records what it receives."""
    from aiosmtpd.controller import Controller

    controllers = []

    def start(tls=None) -> Peer:
        port = free_port()
        handler = RecordingHandler()
        context = None if tls is False else (tls or pki.server_context)
        controller = Controller(
            handler, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=False
        )
        controller.start()
        controllers.append(controller)
        return Peer("localhost", port, "", "", handler)

    yield start
    for controller in controllers:
        controller.stop()


# --- people -------------------------------------------------------------------------------------


@dataclass
class People:
    domain: Domain
    admin: Account
    user: Account
    outsider: Account


def make_domain(name: str) -> Domain:
    domain = Domain.objects.create(name=name, verified_at=timezone.now())
    OrgUnit.objects.create(domain=domain, name=name)
    OutboundPolicy.objects.create(domain=domain)
    return domain


@pytest.fixture
def people(db) -> People:
    """A domain admin, a user in that domain, and a user of another domain, everywhere."""
    domain = make_domain("example.com")
    make_domain("other.example")
    admin = Account.objects.create_user("admin@example.com", PASSWORD, display_name="Dana Admin")
    domain.admins.add(admin)
    user = Account.objects.create_user("ann@example.com", PASSWORD, display_name="Ann Example")
    outsider = Account.objects.create_user("zoe@other.example", PASSWORD)
    return People(domain=domain, admin=admin, user=user, outsider=outsider)


def server_for(peer: Peer, security: str = SmtpServer.Security.STARTTLS) -> SmtpServer:
    return SmtpServer.objects.create(
        host=peer.host,
        port=peer.port,
        security=security,
        username=peer.login,
        password=peer.password,
        last_test_ok=True,
    )


# --- a real Celery worker -----------------------------------------------------------------------


def _database_url() -> str:
    s = connection.settings_dict
    if s["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{s['NAME']}"
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def _require_broker(settings) -> None:
    if settings.CELERY_BROKER_URL.startswith("redis://"):
        import redis

        try:
            redis.Redis.from_url(settings.CELERY_BROKER_URL).ping()
        except redis.exceptions.ConnectionError:
            missing(f"Redis at {settings.CELERY_BROKER_URL} is not reachable")


def start_worker(settings, log: Path, **extra_env: str) -> subprocess.Popen:
    """Start `celery worker` as its own process on the configured broker and test database."""
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=_database_url(),
        SENDGATE_EXTRA_CA_FILE=settings.SENDGATE_EXTRA_CA_FILE,
        SENDGATE_SMTP_ALLOWED_NETWORKS=",".join(settings.SENDGATE_SMTP_ALLOWED_NETWORKS),
        SENDGATE_SMTP_ALLOWED_PORTS=",".join(settings.SENDGATE_SMTP_ALLOWED_PORTS),
        **extra_env,
    )
    with open(log, "w") as out:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool",
                "solo",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "-Q",
                settings.CELERY_TASK_DEFAULT_QUEUE,
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while "ready." not in log.read_text():
        if worker.poll() is not None or time.monotonic() > deadline:
            worker.kill()
            pytest.fail(f"the Celery worker did not start:\n{log.read_text()}")
        time.sleep(0.2)
    worker.log = log
    return worker


def stop_worker(worker: subprocess.Popen) -> None:
    if worker.poll() is not None:
        return
    worker.terminate()
    try:
        worker.wait(timeout=20)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


@pytest.fixture
def worker_factory(transactional_db, settings, tmp_path) -> Iterator:
    """Start real worker processes on demand (with extra environment); all stopped afterwards."""
    _require_broker(settings)
    workers: list[subprocess.Popen] = []

    def start(**extra_env: str) -> subprocess.Popen:
        worker = start_worker(settings, tmp_path / f"worker{len(workers)}.log", **extra_env)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        stop_worker(worker)


@pytest.fixture
def celery_worker(worker_factory) -> subprocess.Popen:
    """One real Celery worker process on the configured broker and test database."""
    return worker_factory()


def wait_for(predicate, timeout: float = 30.0, what: str = "condition", interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --- the SMTP submission listener ----------------------------------------------------------------


@dataclass
class Submission:
    host: str
    port: int
    tls_port: int
    ca_file: str

    def client_context(self):
        import ssl

        return ssl.create_default_context(cafile=self.ca_file)

    def connect(self, *, starttls: bool = True):
        import smtplib

        client = smtplib.SMTP(self.host, self.port, timeout=10)
        client.ehlo("client.test")
        if starttls:
            client.starttls(context=self.client_context())
            client.ehlo("client.test")
        return client


@pytest.fixture
def start_submission(transactional_db, settings, pki: Pki) -> Iterator:
    """Start the real listener on free loopback ports, its asyncio loop in a background thread."""
    import asyncio
    import threading

    from django.db import connections

    from outbound.listener import ListenerConfig, in_db, start_servers

    settings.SENDGATE_AUTH_FAILURE_DELAY = 0
    settings.SENDGATE_SUBMISSION_MAX_MESSAGE_BYTES = 64 * 1024
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    servers = []

    def start(**overrides) -> Submission:
        config = ListenerConfig(
            **{
                "host": "127.0.0.1",
                "port": free_port(),
                "tls_port": free_port(),
                "tls_context": pki.server_context,
                "hostname": "submit.test",
                "max_message_bytes": settings.SENDGATE_SUBMISSION_MAX_MESSAGE_BYTES,
            }
            | overrides
        )
        servers.extend(asyncio.run_coroutine_threadsafe(start_servers(config), loop).result(10))
        return Submission("localhost", config.port, config.tls_port, pki.ca_file)

    thread.start()
    yield start

    async def shutdown() -> None:
        for server in servers:
            server.close()
        sessions = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in sessions:
            task.cancel()
        await asyncio.gather(*sessions, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    # The listener's database thread keeps a connection; PostgreSQL cannot drop the test database
    # while it is open.
    loop.run_until_complete(in_db(connections.close_all))
    loop.close()


@pytest.fixture
def submission_server(start_submission) -> Submission:
    return start_submission()


# --- a real browser -----------------------------------------------------------------------------


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SLOW = 30_000  # ms: generous for a slow 2-core machine; never an assertion about speed


def csp_violations(page) -> list[str]:
    """The list Chromium's reports of every script, style or image the Content-Security-Policy
    blocked on ``page`` go to (empty while the console keeps its own policy)."""
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return violations


@pytest.fixture
def chromium_page():
    """A fresh Chromium page; skipped (or failed under SENDGATE_REQUIRE_SERVICES=1) without one."""
    if sync_playwright is None:
        missing("the playwright Python package is not importable")
    if not CHROMIUM.exists():
        missing(f"Chromium is not installed at {CHROMIUM}")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
        except PlaywrightError as exc:
            missing(f"Chromium at {CHROMIUM} does not start: {exc}")
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(SLOW)
        context.set_default_navigation_timeout(SLOW)
        page = context.new_page()
        violations = csp_violations(page)
        yield page
        context.close()
        browser.close()
        assert violations == [], "the console broke its own Content-Security-Policy"


# --- scripted misbehaving SMTP peers (tests/fault_peer.py) ------------------------------------


@pytest.fixture
def fault_peer():
    peers = []

    def start(**script) -> FaultPeer:
        peer = FaultPeer(Script(**script))
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.stop()


@pytest.fixture
def gateway_is(people, trust_test_ca):
    """Make a peer example.com's outbound gateway (plain SMTP: the faults are the point here)."""

    def use(peer: FaultPeer) -> FaultPeer:
        people.domain.outbound_gateway = SmtpServer.objects.create(
            host="localhost", port=peer.port, security=SmtpServer.Security.NONE, last_test_ok=True
        )
        people.domain.save()
        return peer

    return use


# --- connection tests run by a worker -----------------------------------------------------------


def submitted(client, response):
    """After a send-as form POST: do what a worker does for the connection test it started (if
    any), then show the page the user ends up on."""
    from django.urls import reverse

    from gateways.connection_test import run_test
    from gateways.models import ConnectionTest

    location = response.headers.get("Location", "")
    if response.status_code != 302 or "?test=" not in location:
        return response
    pk = int(location.rsplit("?test=", 1)[1])
    assert ConnectionTest.objects.get(pk=pk).is_running
    run_test(pk)
    return client.get(reverse("connection_test_status", args=[pk]), follow=True)


# --- OAuth 2.0: a local authorization server and an SMTP server that checks its tokens -----------


@dataclass
class OAuthWorld:
    auth: object  # tests.oauth_peers.AuthorizationServer
    smtp: object  # tests.oauth_peers.TokenCheckingHandler
    smtp_port: int

    def env(self) -> dict[str, str]:
        """The provider settings, for worker processes."""
        names = ["NAME", "CLIENT_ID", "CLIENT_SECRET", "AUTHORIZE_URL", "TOKEN_URL", "SCOPE"]
        names += ["SMTP_HOST", "SMTP_PORT", "SMTP_SECURITY"]
        return {
            f"SENDGATE_OAUTH_GENERIC_{n}": str(
                getattr(django_settings, f"SENDGATE_OAUTH_GENERIC_{n}")
            )
            for n in names
        }


@pytest.fixture
def oauth_world(settings, trust_test_ca, pki: Pki) -> Iterator[OAuthWorld]:
    """The operator configured a generic provider pointing at a local authorization server, whose
    SMTP server takes only XOAUTH2 with the tokens that authorization server issued."""
    from .oauth_peers import (
        CLIENT_ID,
        CLIENT_SECRET,
        start_authorization_server,
        start_token_smtp,
    )

    auth, httpd = start_authorization_server(pki.server_context)
    port = free_port()
    controller, handler = start_token_smtp(port=port, tls=pki.server_context, auth=auth)
    settings.SENDGATE_OAUTH_GENERIC_NAME = "Test Mail"
    settings.SENDGATE_OAUTH_GENERIC_CLIENT_ID = CLIENT_ID
    settings.SENDGATE_OAUTH_GENERIC_CLIENT_SECRET = CLIENT_SECRET
    settings.SENDGATE_OAUTH_GENERIC_AUTHORIZE_URL = f"{auth.url}/authorize"
    settings.SENDGATE_OAUTH_GENERIC_TOKEN_URL = f"{auth.url}/token"
    settings.SENDGATE_OAUTH_GENERIC_SCOPE = "smtp.send offline_access"
    settings.SENDGATE_OAUTH_GENERIC_SMTP_HOST = "localhost"
    settings.SENDGATE_OAUTH_GENERIC_SMTP_PORT = port
    settings.SENDGATE_OAUTH_GENERIC_SMTP_SECURITY = "starttls"
    yield OAuthWorld(auth=auth, smtp=handler, smtp_port=port)
    controller.stop()
    httpd.shutdown()
    httpd.server_close()


@dataclass
class PostfixWorld:
    oauth: OAuthWorld
    stack: object  # tests.mail_stack.MailStack
    relayed: RecordingHandler  # what Postfix passed on


@pytest.fixture
def postfix_oauth(oauth_world, settings, pki: Pki) -> Iterator[PostfixWorld]:
    """Postfix with Dovecot SASL (oauth2 passdb, introspecting at the test authorization server)
    as the provider's SMTP server; it relays what it accepts to a recording sink."""
    import shutil
    import tempfile

    from aiosmtpd.controller import Controller

    from . import mail_stack

    reason = mail_stack.available()
    if reason:
        missing(reason)
    relayed = RecordingHandler()
    sink = Controller(relayed, hostname="127.0.0.1", port=free_port())
    sink.start()
    # Not under pytest's tmp_path: its parents are private to root, and Dovecot's and Postfix's
    # own users must reach the sockets and files.
    root = Path(tempfile.mkdtemp(prefix="sendgate-mailstack-"))
    try:
        stack = mail_stack.start(
            root,
            port=free_port(),
            sink_port=sink.port,
            introspection_url=f"{oauth_world.auth.url}/introspect",
            ca_file=pki.ca_file,
            pki=pki,
        )
    except RuntimeError as exc:
        sink.stop()
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(str(exc))
    settings.SENDGATE_OAUTH_GENERIC_SMTP_PORT = stack.port
    yield PostfixWorld(oauth=oauth_world, stack=stack, relayed=relayed)
    stack.stop()
    sink.stop()
    shutil.rmtree(root, ignore_errors=True)
