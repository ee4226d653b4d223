"""A small OAuth 2.0 authorization server and an SMTP server that checks its tokens, on loopback.

The authorization server speaks HTTPS (a trustme certificate), shows a consent page, issues codes
bound to the PKCE challenge, answers the token endpoint for the authorization-code and refresh
grants, and can revoke. The SMTP server offers only AUTH XOAUTH2 (or OAUTHBEARER) and accepts an
access token only while the authorization server says it is valid.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from demo.sink import RecordingHandler

CLIENT_ID = "sendgate-test-client"
CLIENT_SECRET = "client-secret-that-must-never-be-stored"  # noqa: S105 - a test value


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    login_hint: str


@dataclass
class AuthorizationServer:
    """State shared by the HTTP handler threads and the tests."""

    expires_in: int = 3600
    rotate_refresh_tokens: bool = True
    token_delay: float = 0.0  # seconds the token endpoint takes (to make calls overlap)
    codes: dict[str, Grant] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # token -> login hint
    access_tokens: dict[str, tuple[float, str]] = field(default_factory=dict)  # -> (expiry, who)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    consents: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    # --- the consent page ---------------------------------------------------------------------

    def approve(self, authorize_url: str) -> str:
        """What the user's "Allow" does: the redirect back to the client, with code and state."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
        self.consents.append(query)
        if query.get("client_id") != CLIENT_ID or query.get("code_challenge_method") != "S256":
            return _with_query(query["redirect_uri"], error="invalid_request", state=query["state"])
        code = secrets.token_urlsafe(16)
        with self.lock:
            self.codes[code] = Grant(
                client_id=query["client_id"],
                redirect_uri=query["redirect_uri"],
                challenge=query["code_challenge"],
                login_hint=query.get("login_hint", ""),
            )
        return _with_query(query["redirect_uri"], code=code, state=query["state"])

    # --- the token endpoint ------------------------------------------------------------------

    def token(self, form: dict[str, str]) -> tuple[int, dict]:
        self.token_requests.append(form)
        time.sleep(self.token_delay)
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return 401, {"error": "invalid_client"}
        with self.lock:
            if form.get("grant_type") == "authorization_code":
                grant = self.codes.pop(form.get("code", ""), None)  # a code works once
                if grant is None or grant.redirect_uri != form.get("redirect_uri"):
                    return 400, {"error": "invalid_grant", "error_description": "bad code"}
                verifier = form.get("code_verifier", "").encode()
                challenge = (
                    base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
                ).decode()
                if challenge != grant.challenge:
                    return 400, {"error": "invalid_grant", "error_description": "PKCE mismatch"}
                return 200, self._issue(grant.login_hint, new_refresh=True)
            if form.get("grant_type") == "refresh_token":
                who = self.refresh_tokens.get(form.get("refresh_token", ""))
                if who is None:
                    return 400, {"error": "invalid_grant", "error_description": "revoked"}
                if self.rotate_refresh_tokens:
                    del self.refresh_tokens[form["refresh_token"]]
                return 200, self._issue(who, new_refresh=self.rotate_refresh_tokens)
        return 400, {"error": "unsupported_grant_type"}

    def _issue(self, who: str, new_refresh: bool) -> dict:
        access = "at-" + secrets.token_urlsafe(24)
        self.access_tokens[access] = (time.time() + self.expires_in, who)
        answer = {"access_token": access, "token_type": "Bearer", "expires_in": self.expires_in}
        if new_refresh:
            refresh = "rt-" + secrets.token_urlsafe(24)
            self.refresh_tokens[refresh] = who
            answer["refresh_token"] = refresh
        return answer

    # --- what tests do to it -------------------------------------------------------------------

    def accepts(self, access_token: str) -> bool:
        return self.holder(access_token) is not None

    def holder(self, access_token: str) -> str | None:
        """Whose token this is, while it is valid (RFC 7662 introspection)."""
        with self.lock:
            expiry, who = self.access_tokens.get(access_token, (0.0, ""))
        return who if expiry > time.time() else None

    def revoke_everything(self) -> None:
        """The user removed the app's access at the provider: no token works any more."""
        with self.lock:
            self.refresh_tokens.clear()
            self.access_tokens.clear()

    def expire_access_tokens(self) -> None:
        """Access tokens lapse (the refresh tokens still work)."""
        with self.lock:
            self.access_tokens.clear()

    def issued_secrets(self) -> list[str]:
        with self.lock:
            return [*self.refresh_tokens, *self.access_tokens]

    def refreshes(self) -> int:
        return sum(1 for r in self.token_requests if r.get("grant_type") == "refresh_token")


def _with_query(url: str, **params: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


class _Handler(BaseHTTPRequestHandler):
    server_version = "TestAuthorizationServer/1"

    @property
    def auth(self) -> AuthorizationServer:
        return self.server.auth  # type: ignore[attr-defined]

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
        pass

    def do_GET(self):  # noqa: N802 - http.server hook
        parts = urlsplit(self.path)
        if parts.path == "/authorize":  # the consent page a browser sees
            allow = html.escape("/approve?" + parts.query)
            hint = html.escape(parse_qs(parts.query).get("login_hint", [""])[0])
            body = (
                "<!doctype html><title>Consent</title><h1>Test provider</h1>"
                f"<p>Let Sendgate send mail as {hint}?</p><a id=allow href='{allow}'>Allow</a>"
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif parts.path == "/approve":
            self.send_response(302)
            self.send_header(
                "Location", self.auth.approve(self.auth.url + "/authorize?" + parts.query)
            )
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_error(404)

    def do_POST(self):  # noqa: N802 - http.server hook
        length = int(self.headers.get("Content-Length", 0))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        path = urlsplit(self.path).path
        if path == "/token":
            status, answer = self.auth.token(form)
        elif path == "/introspect":  # for Dovecot's oauth2 passdb
            who = self.auth.holder(form.get("token", ""))
            status, answer = 200, {"active": who is not None, "username": who or ""}
        else:
            self.send_error(404)
            return
        body = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def start_authorization_server(
    tls: ssl.SSLContext, **options
) -> tuple[AuthorizationServer, ThreadingHTTPServer]:
    auth = AuthorizationServer(**options)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)  # SSLContext method
    httpd.auth = auth  # type: ignore[attr-defined]
    auth.url = f"https://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return auth, httpd


# --- an SMTP server that takes tokens ----------------------------------------------------------


class TokenCheckingHandler(RecordingHandler):
    """aiosmtpd calls ``auth_<MECHANISM>`` on the handler for each mechanism it offers."""

    def __init__(self, auth: AuthorizationServer, mechanisms: tuple[str, ...]) -> None:
        super().__init__()
        self.auth = auth
        self.mechanisms = mechanisms
        self.attempts: list[tuple[str, str]] = []  # (mechanism, user)

    async def auth_XOAUTH2(self, server, args):  # noqa: N802 - aiosmtpd naming
        pairs = _pairs(args, separator="\x01")
        return await self._check(server, "XOAUTH2", pairs.get("user", ""), pairs.get("auth", ""))

    async def auth_OAUTHBEARER(self, server, args):  # noqa: N802 - aiosmtpd naming
        decoded = base64.b64decode(args[1]).decode() if len(args) > 1 else ""
        gs2, _sep, rest = decoded.partition("\x01")
        user = next((p[2:] for p in gs2.split(",") if p.startswith("a=")), "")
        pairs = dict(kv.split("=", 1) for kv in rest.split("\x01") if "=" in kv)
        return await self._check(server, "OAUTHBEARER", user, pairs.get("auth", ""))

    async def _check(self, server, mechanism: str, user: str, auth: str):
        self.attempts.append((mechanism, user))
        token = auth.removeprefix("Bearer ")
        if token and self.auth.accepts(token):
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))
        # Both mechanisms answer a refused token with an error challenge first (RFC 7628 3.2.2).
        error = json.dumps({"status": "invalid_token", "schemes": "bearer"})
        await server.challenge_auth(error)
        return AuthResult(
            success=False, handled=False, message="535 5.7.3 Authentication unsuccessful"
        )


def _pairs(args, separator: str) -> dict[str, str]:
    decoded = base64.b64decode(args[1]).decode() if len(args) > 1 else ""
    return dict(kv.split("=", 1) for kv in decoded.split(separator) if "=" in kv)


def start_token_smtp(
    *, port: int, tls: ssl.SSLContext, auth: AuthorizationServer, mechanisms=("XOAUTH2",)
) -> tuple[Controller, TokenCheckingHandler]:
    """STARTTLS required, then AUTH with one of ``mechanisms`` only (no passwords at all)."""
    handler = TokenCheckingHandler(auth, mechanisms)
    excluded = [m for m in ("LOGIN", "PLAIN", "XOAUTH2", "OAUTHBEARER") if m not in mechanisms]
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=tls,
        require_starttls=True,
        auth_require_tls=True,
        auth_required=True,
        auth_exclude_mechanism=excluded,
    )
    controller.start()
    return controller, handler
