"""Send-as aliases, the SMTP servers users attach to them, and their connection tests."""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _

from directory.models import Account
from mailkit.addresses import normalize_address, reject_control_characters
from mailkit.oauth import Tokens, configured_providers
from mailkit.secrets import EncryptedTextField
from mailkit.smtp import Security, Target, readable_transcript


class SmtpServer(models.Model):
    """An SMTP server Sendgate relays through: a domain's gateway or a user's per-alias gateway."""

    class Security(models.TextChoices):
        STARTTLS = "starttls", _("STARTTLS (required)")
        TLS = "tls", _("TLS (implicit, usually port 465)")
        NONE = "none", _("None (port 25, operator permission only)")

    host = models.CharField(_("host"), max_length=253)
    port = models.PositiveIntegerField(_("port"), default=587)
    security = models.CharField(
        _("security"), max_length=10, choices=Security.choices, default=Security.STARTTLS
    )
    username = models.CharField(_("username"), max_length=320, blank=True)
    password = EncryptedTextField(_("password"), blank=True)
    last_test_ok = models.BooleanField(default=False)
    last_tested_at = models.DateTimeField(null=True, blank=True)
    last_test_summary = models.TextField(blank=True)
    # Set when the server refused our credentials during delivery: mail for it waits until the
    # owner fixes the password, instead of going out another way. Only gateways.server_state
    # changes last_test_ok, paused_at and pause_reason.
    paused_at = models.DateTimeField(null=True, blank=True)
    pause_reason = models.TextField(blank=True)
    # Signed in with OAuth 2.0 instead of a password: the provider's key (mailkit.oauth), the
    # refresh token (encrypted like passwords), and the cached access token with its expiry.
    oauth_provider = models.CharField(max_length=20, blank=True)
    oauth_refresh_token = EncryptedTextField(blank=True)
    oauth_access_token = EncryptedTextField(blank=True)
    oauth_expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_paused(self) -> bool:
        return self.paused_at is not None

    @property
    def uses_oauth(self) -> bool:
        return bool(self.oauth_provider)

    @property
    def oauth_provider_name(self) -> str:
        provider = configured_providers().get(self.oauth_provider)
        return provider.name if provider else self.oauth_provider

    def sign_in(self, provider: str, tokens: Tokens) -> None:
        """Use OAuth tokens instead of a password (the password, if any, is dropped)."""
        self.oauth_provider = provider
        self.password = ""
        self.keep_tokens(tokens)

    def keep_tokens(self, tokens: Tokens) -> None:
        self.oauth_refresh_token = tokens.refresh_token
        self.oauth_access_token = tokens.access_token
        self.oauth_expires_at = tokens.expires_at

    def clean(self) -> None:
        reject_control_characters(self.host)
        reject_control_characters(self.username)

    def target(self) -> Target:
        """The dial parameters that delivery and the connection test both use (for an OAuth
        server, get a fresh access token first: gateways.tokens.dial_target)."""
        return Target(
            host=self.host,
            port=self.port,
            security=Security(self.security),
            username=self.username,
            password=self.password or "",
            oauth_token=(self.oauth_access_token or "") if self.uses_oauth else "",
        )


class SendAsAlias(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", _("Waiting for confirmation")
        VERIFIED = "verified", _("Verified")

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="aliases")
    display_name = models.CharField(_("name"), max_length=200, blank=True)
    address = models.EmailField(_("e-mail address"))
    reply_to = models.EmailField(_("reply-to address"), blank=True)
    treat_as_alias = models.BooleanField(_("treat as an alias"), default=True)
    is_default = models.BooleanField(_("default From address"), default=False)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    confirmation_digest = models.CharField(max_length=64, blank=True)
    confirmation_sent_at = models.DateTimeField(null=True, blank=True)
    confirmation_failures = models.PositiveSmallIntegerField(default=0)
    smtp_server = models.OneToOneField(
        SmtpServer, null=True, blank=True, on_delete=models.SET_NULL, related_name="alias"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["address"]
        constraints = [
            models.UniqueConstraint(fields=["account", "address"], name="unique_alias_per_account"),
            models.UniqueConstraint(
                fields=["account"], condition=Q(is_default=True), name="one_default_alias"
            ),
        ]

    def __str__(self) -> str:
        return self.address

    @property
    def is_verified(self) -> bool:
        return self.state == self.State.VERIFIED

    def clean(self) -> None:
        self.address = normalize_address(self.address)
        reject_control_characters(self.display_name)
        if self.reply_to:
            self.reply_to = normalize_address(self.reply_to)

    class Confirmation(models.TextChoices):
        CONFIRMED = "confirmed", _("Confirmed.")
        WRONG = "wrong", _("That code is not right. Check the latest confirmation mail.")
        EXPIRED = "expired", _("That code has expired. Send a new one.")
        LOCKED = "locked", _("Too many wrong codes. Send a new one.")

    MAX_CONFIRMATION_FAILURES = 5

    def new_confirmation_code(self) -> str:
        """Create a fresh code, keep only its digest, and return it for the confirmation mail."""
        code = f"{secrets.randbelow(10**6):06d}"
        self.confirmation_digest = self._digest(code)
        self.confirmation_sent_at = timezone.now()
        self.confirmation_failures = 0
        return code

    def confirm(self, code: str, valid_for: timedelta) -> Confirmation:
        """Check a code; six digits only resist guessing with the failure limit."""
        if not self.confirmation_digest or (
            self.confirmation_failures >= self.MAX_CONFIRMATION_FAILURES
        ):
            return self.Confirmation.LOCKED
        assert self.confirmation_sent_at is not None  # set with the digest
        if timezone.now() - self.confirmation_sent_at > valid_for:
            return self.Confirmation.EXPIRED
        if not hmac.compare_digest(self.confirmation_digest, self._digest(code.strip())):
            self.confirmation_failures += 1
            return self.Confirmation.WRONG
        self.mark_verified()
        return self.Confirmation.CONFIRMED

    def mark_verified(self) -> None:
        self.state = self.State.VERIFIED
        self.confirmation_digest = ""
        self.confirmation_failures = 0

    def _digest(self, code: str) -> str:
        # Keyed with SECRET_KEY: a database dump alone does not reveal the six digits.
        return salted_hmac("alias-confirmation", f"{self.address}:{code}").hexdigest()


class ConnectionTest(models.Model):
    """One connection test a user started, run by a worker, with the change it would save.

    Kept to rate-limit tests (counted from the moment they start) and to show the result; the
    SMTP settings under test are kept only until the test is over (the password until the
    change is saved, encrypted like any stored password).
    """

    class State(models.TextChoices):
        RUNNING = "running", _("Testing")
        PASSED = "passed", _("Passed")
        FAILED = "failed", _("Failed")

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    finished_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)  # the change it tested was saved
    ok = models.BooleanField(default=False)
    summary = models.TextField(blank=True)
    transcript = models.TextField(blank=True)
    # The change under test: the alias being edited (none: a new alias) and its fields ...
    alias = models.ForeignKey(
        SendAsAlias, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    address = models.EmailField(blank=True)
    display_name = models.CharField(max_length=200, blank=True)
    reply_to = models.EmailField(blank=True)
    treat_as_alias = models.BooleanField(default=True)
    # ... and the server's.
    host = models.CharField(max_length=253)
    port = models.PositiveIntegerField(default=587)
    security = models.CharField(max_length=10, choices=SmtpServer.Security.choices, blank=True)
    username = models.CharField(max_length=320, blank=True)
    password = EncryptedTextField(blank=True)

    def __str__(self) -> str:
        return f"{self.host}: {self.state}"

    @property
    def is_running(self) -> bool:
        return self.state == self.State.RUNNING

    @property
    def transcript_lines(self) -> list[str]:
        return readable_transcript(self.transcript.splitlines())

    def server(self, base: SmtpServer | None = None) -> SmtpServer:
        """The server as the test dialled it: ``base`` (the alias's saved one) with the tested
        settings on top, or a new one."""
        server = base or SmtpServer()
        server.host, server.port, server.security = self.host, self.port, self.security
        server.username, server.password = self.username, self.password
        if self.password:  # a password replaces a sign-in
            server.oauth_provider = ""
            server.oauth_refresh_token = server.oauth_access_token = ""
        return server


class DeliverabilityCheck(models.Model):
    """What DNS said about an alias domain and a gateway host, looked up by a worker and kept
    for an hour: the send-as page never waits for DNS the user controls."""

    alias_domain = models.CharField(max_length=253)
    gateway_host = models.CharField(max_length=253, blank=True)  # blank: no gateway
    requested_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    facts = models.JSONField(null=True, blank=True)  # deliverability.Facts.to_json()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["alias_domain", "gateway_host"], name="one_check_per_domain_and_host"
            )
        ]

    def __str__(self) -> str:
        return f"{self.alias_domain} via {self.gateway_host or '-'}"
