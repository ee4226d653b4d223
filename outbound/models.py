"""Credentials for the submission port: app passwords, and the failures that throttle logins."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from mailkit.mta_sts import Mode, Policy


class AppPasswordQuerySet(models.QuerySet):
    def for_account(self, account) -> AppPasswordQuerySet:
        return self.filter(account=account)


class AppPassword(models.Model):
    """A password for the SMTP submission port only, so the console password never leaves it.

    Only a keyed hash is stored (see outbound.credentials); the user sees the password once.
    """

    account = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="app_passwords"
    )
    name = models.CharField(
        _("name"), max_length=100, help_text=_("Where you use it, e.g. “Laptop Thunderbird”.")
    )
    password_hash = models.CharField(max_length=256)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = AppPasswordQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class AuthFailure(models.Model):
    """One failed submission login; recent rows throttle that address and that login name."""

    remote_ip = models.GenericIPAddressField()
    login = models.CharField(max_length=320)
    failed_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["remote_ip", "failed_at"]),
            models.Index(fields=["login", "failed_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.login} from {self.remote_ip} at {self.failed_at}"


class MtaStsPolicy(models.Model):
    """A recipient domain's MTA-STS policy as last fetched (RFC 8461), shared by every worker.

    Used until ``expires_at`` (fetched_at + max_age); fetched again when the domain's TXT record
    announces another id.
    """

    domain = models.CharField(max_length=253, unique=True)
    policy_id = models.CharField(max_length=32)
    mode = models.CharField(max_length=10)
    mx = models.JSONField(default=list)
    max_age = models.PositiveIntegerField()
    fetched_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.domain}: {self.mode}"

    def policy(self) -> Policy:
        return Policy(mode=Mode(self.mode), mx=tuple(self.mx), max_age=self.max_age)
