"""Access tokens for servers signed in with OAuth 2.0: cached, renewed shortly before they expire.

Delivery, the connection test and the daily re-test all dial through ``dial_target``.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from mailkit import oauth
from mailkit.smtp import Target

from .models import SmtpServer


def dial_target(server: SmtpServer, *, force_refresh: bool = False) -> tuple[Target, bool]:
    """The server's dial parameters with a usable access token, and whether the token was
    renewed just now. Raises ``oauth.TokenError`` when no token can be had."""
    refreshed = server.uses_oauth and ensure_fresh_token(server, force=force_refresh)
    return server.target(), refreshed


def _fresh(server: SmtpServer) -> bool:
    margin = timedelta(seconds=settings.SENDGATE_OAUTH_REFRESH_MARGIN)
    return bool(
        server.oauth_access_token
        and server.oauth_expires_at
        and server.oauth_expires_at - timezone.now() > margin
    )


def ensure_fresh_token(server: SmtpServer, *, force: bool = False) -> bool:
    """Renew ``server``'s access token when it is due (or ``force``); True when renewed."""
    if not force and _fresh(server):
        return False
    provider = oauth.configured_providers().get(server.oauth_provider)
    if provider is None:
        raise oauth.TokenError(
            _("Sign-in with this provider is no longer set up here; ask your administrator.")
        )
    if server.pk is None:  # not saved yet (a connection test before saving)
        server.keep_tokens(oauth.refresh(provider, server.oauth_refresh_token))
        return True
    with transaction.atomic():
        # One worker renews at a time: providers that rotate refresh tokens (Microsoft) would
        # otherwise see the old one used twice. SQLite's IMMEDIATE transactions serialise too.
        rows = SmtpServer.objects.filter(pk=server.pk)
        if connection.features.has_select_for_update:
            rows = rows.select_for_update()
        current = rows.first()
        if current is None:
            raise oauth.TokenError(_("This server was removed."))
        if not force and _fresh(current):  # another worker renewed it meanwhile
            server.keep_tokens(_tokens_of(current))
            return False
        tokens = oauth.refresh(provider, current.oauth_refresh_token)
        SmtpServer.objects.filter(pk=server.pk).update(
            oauth_refresh_token=tokens.refresh_token,
            oauth_access_token=tokens.access_token,
            oauth_expires_at=tokens.expires_at,
        )
    server.keep_tokens(tokens)
    return True


def expire_access_token(server_id: int) -> None:
    """Forget the cached access token (the server refused it): the next dial renews it."""
    SmtpServer.objects.filter(pk=server_id).update(oauth_expires_at=timezone.now())


def _tokens_of(server: SmtpServer) -> oauth.Tokens:
    assert server.oauth_expires_at is not None  # only a fresh sign-in is read back: it has one
    return oauth.Tokens(
        access_token=server.oauth_access_token,
        refresh_token=server.oauth_refresh_token,
        expires_at=server.oauth_expires_at,
    )
