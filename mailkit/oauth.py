"""OAuth 2.0 for users' SMTP servers: the providers the operator configured, and the
authorization-code flow (PKCE + state), code exchange and refresh, done by Authlib.

The token endpoint is reached over the same verified TLS as SMTP (system store plus
SENDGATE_EXTRA_CA_FILE). Nothing here touches the database: callers store what they get.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx2
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from django.conf import settings
from django.utils.translation import gettext as _

from .smtp import Security, tls_context

MICROSOFT = "microsoft"
GOOGLE = "google"
GENERIC = "generic"


@dataclass(frozen=True)
class Provider:
    key: str
    name: str  # shown on the button: "Sign in with <name>"
    authorize_url: str
    token_url: str
    scope: str
    client_id: str
    client_secret: str = field(repr=False)
    smtp_host: str
    smtp_port: int
    smtp_security: Security
    # Extra parameters for the consent page (Google hands out a refresh token only when asked).
    authorize_params: tuple[tuple[str, str], ...] = ()


class TokenError(Exception):
    """The token endpoint did not give us a token. ``revoked`` when only a new sign-in helps."""

    def __init__(self, message: str, *, revoked: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.revoked = revoked


@dataclass(frozen=True)
class Tokens:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime


def configured_providers() -> dict[str, Provider]:
    """The providers whose client id the operator set, keyed by ``Provider.key``."""
    found: dict[str, Provider] = {}
    if settings.SENDGATE_OAUTH_MICROSOFT_CLIENT_ID:
        tenant = settings.SENDGATE_OAUTH_MICROSOFT_TENANT or "organizations"
        base = f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0"
        found[MICROSOFT] = Provider(
            key=MICROSOFT,
            name="Microsoft",
            authorize_url=f"{base}/authorize",
            token_url=f"{base}/token",
            scope="https://outlook.office.com/SMTP.Send offline_access",
            client_id=settings.SENDGATE_OAUTH_MICROSOFT_CLIENT_ID,
            client_secret=settings.SENDGATE_OAUTH_MICROSOFT_CLIENT_SECRET,
            smtp_host="smtp.office365.com",
            smtp_port=587,
            smtp_security=Security.STARTTLS,
            authorize_params=(("prompt", "select_account"),),
        )
    if settings.SENDGATE_OAUTH_GOOGLE_CLIENT_ID:
        found[GOOGLE] = Provider(
            key=GOOGLE,
            name="Google",
            authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
            token_url="https://oauth2.googleapis.com/token",  # noqa: S106 - a URL
            scope="https://mail.google.com/",
            client_id=settings.SENDGATE_OAUTH_GOOGLE_CLIENT_ID,
            client_secret=settings.SENDGATE_OAUTH_GOOGLE_CLIENT_SECRET,
            smtp_host="smtp.gmail.com",
            smtp_port=465,
            smtp_security=Security.TLS,
            authorize_params=(("access_type", "offline"), ("prompt", "consent")),
        )
    if settings.SENDGATE_OAUTH_GENERIC_CLIENT_ID:
        found[GENERIC] = Provider(
            key=GENERIC,
            name=settings.SENDGATE_OAUTH_GENERIC_NAME,
            authorize_url=settings.SENDGATE_OAUTH_GENERIC_AUTHORIZE_URL,
            token_url=settings.SENDGATE_OAUTH_GENERIC_TOKEN_URL,
            scope=settings.SENDGATE_OAUTH_GENERIC_SCOPE,
            client_id=settings.SENDGATE_OAUTH_GENERIC_CLIENT_ID,
            client_secret=settings.SENDGATE_OAUTH_GENERIC_CLIENT_SECRET,
            smtp_host=settings.SENDGATE_OAUTH_GENERIC_SMTP_HOST,
            smtp_port=settings.SENDGATE_OAUTH_GENERIC_SMTP_PORT,
            smtp_security=Security(settings.SENDGATE_OAUTH_GENERIC_SMTP_SECURITY),
        )
    return found


def _client(provider: Provider, redirect_uri: str = "") -> OAuth2Client:
    return OAuth2Client(
        client_id=provider.client_id,
        client_secret=provider.client_secret,
        scope=provider.scope,
        redirect_uri=redirect_uri or None,
        code_challenge_method="S256",
        # Microsoft and Google both take the secret in the form body.
        token_endpoint_auth_method="client_secret_post",  # noqa: S106 - a method name
        verify=tls_context(Security.TLS),
        timeout=settings.SENDGATE_OAUTH_TIMEOUT,
        trust_env=False,  # no proxies from the environment: the endpoints are the operator's
    )


@dataclass(frozen=True)
class Consent:
    """Where to send the user, and what to keep in their session to finish the flow."""

    url: str
    state: str
    code_verifier: str = field(repr=False)


def start_consent(provider: Provider, redirect_uri: str, login_hint: str) -> Consent:
    """Build the provider's consent URL with a fresh ``state`` and PKCE (S256) challenge."""
    verifier = generate_token(64)
    with _client(provider, redirect_uri) as client:
        url, state = client.create_authorization_url(
            provider.authorize_url,
            code_verifier=verifier,
            login_hint=login_hint,
            **dict(provider.authorize_params),
        )
    return Consent(url=url, state=state, code_verifier=verifier)


def exchange_code(provider: Provider, redirect_uri: str, code: str, code_verifier: str) -> Tokens:
    """Trade the authorization code (and the PKCE verifier) for tokens."""
    with _client(provider, redirect_uri) as client:
        token = _call(
            lambda: client.fetch_token(
                provider.token_url,
                grant_type="authorization_code",
                code=code,
                code_verifier=code_verifier,
            )
        )
    if not token.get("refresh_token"):
        raise TokenError(
            _(
                "%(provider)s gave no refresh token, so Sendgate could not keep sending. "
                "Ask your administrator to check the app's scopes (offline access)."
            )
            % {"provider": provider.name}
        )
    return _tokens(token, "")


def refresh(provider: Provider, refresh_token: str) -> Tokens:
    """A new access token; providers that rotate refresh tokens hand a new one as well."""
    with _client(provider) as client:
        token = _call(lambda: client.refresh_token(provider.token_url, refresh_token=refresh_token))
    return _tokens(token, refresh_token)


def _call(request):
    try:
        return request()
    except OAuthError as exc:
        detail = f"{exc.error}: {exc.description}" if exc.description else exc.error
        if exc.error == "invalid_grant":
            raise TokenError(
                _("The sign-in has expired or was revoked (%(detail)s). Sign in again.")
                % {"detail": detail},
                revoked=True,
            ) from exc
        raise TokenError(_("The sign-in service refused: %(detail)s") % {"detail": detail}) from exc
    except (httpx2.HTTPError, ValueError) as exc:  # ValueError: an answer that is not JSON
        raise TokenError(
            _("The sign-in service could not be reached: %(reason)s") % {"reason": exc}
        ) from exc


def _tokens(token: dict, previous_refresh_token: str) -> Tokens:
    if not token.get("access_token"):
        raise TokenError(_("The sign-in service answered without an access token."))
    expires_at = token.get("expires_at")
    if expires_at is None:  # no expires_in: assume the common hour
        expires_at = datetime.now(tz=UTC).timestamp() + 3600
    return Tokens(
        access_token=token["access_token"],
        refresh_token=token.get("refresh_token") or previous_refresh_token,
        expires_at=datetime.fromtimestamp(int(expires_at), tz=UTC),
    )
