"""What the console remembers about signing in: open sessions and two-step enrolment deadlines.

Failed sign-ins are django-axes' tables; TOTP devices and recovery codes are django-otp's.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def describe_device(user_agent: str) -> str:
    """ "Firefox / Linux": enough to recognise one's own browsers in the sessions list."""
    browser = next((name for token, name in _BROWSERS if token in user_agent), "")
    system = next((name for token, name in _SYSTEMS if token in user_agent), "")
    if browser and system:
        return f"{browser} / {system}"
    return browser or system or " ".join(user_agent.split())[:60] or "?"


_BROWSERS = [
    ("Edg/", "Edge"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
]
_SYSTEMS = [
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
]


class ConsoleSessionQuerySet(models.QuerySet):
    def for_account(self, account) -> ConsoleSessionQuerySet:
        return self.filter(account=account)


class ConsoleSession(models.Model):
    """One signed-in browser: which device, from where, last seen when (the sessions list)."""

    account = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="console_sessions"
    )
    session_key = models.CharField(max_length=40, unique=True)
    ip_address = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    user_agent = models.CharField(_("browser"), max_length=300, blank=True)
    signed_in_at = models.DateTimeField(_("signed in"), default=timezone.now)
    last_seen_at = models.DateTimeField(_("last seen"), default=timezone.now, db_index=True)

    objects = ConsoleSessionQuerySet.as_manager()

    class Meta:
        ordering = ["-last_seen_at"]

    def __str__(self) -> str:
        return f"{self.account} from {self.ip_address}"

    @property
    def device(self) -> str:
        return describe_device(self.user_agent)


class TwoStepDeadline(models.Model):
    """When an account that must use two-step verification has to have enrolled.

    Set the first time the requirement meets the account without a device, so every admin gets
    the whole grace period, also one who becomes admin later.
    """

    account = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="two_step_deadline"
    )
    due_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.account} by {self.due_at}"
