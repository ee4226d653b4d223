"""The "allow per-user outbound gateways" setting and the record of its changes."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Setting(models.TextChoices):
    """What an admin chooses for one scope; the root OU cannot inherit."""

    INHERIT = "inherit", _("Inherit")
    ALLOW = "allow", _("Allowed")
    DENY = "deny", _("Not allowed")

    @classmethod
    def of(cls, allow: bool | None) -> Setting:
        if allow is None:
            return cls.INHERIT
        return cls.ALLOW if allow else cls.DENY

    @property
    def allow(self) -> bool | None:
        return None if self == Setting.INHERIT else self == Setting.ALLOW


class OutboundPolicy(models.Model):
    """The value at the domain's root OU, and the domain's change counter.

    ``version`` numbers every save and structural change in the domain; an account's
    ``policy_version`` says which of them last wrote its value, so an older propagation never
    overwrites a newer one.
    """

    domain = models.OneToOneField(
        "directory.Domain", on_delete=models.CASCADE, related_name="outbound_policy"
    )
    allow_user_gateways = models.BooleanField(_("allow per-user outbound gateways"), default=False)
    version = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.domain}: {'allow' if self.allow_user_gateways else 'deny'}"


class UnitOverride(models.Model):
    """An OU below the root that does not inherit: its own allow/deny. No row means inherit."""

    org_unit = models.OneToOneField(
        "directory.OrgUnit", on_delete=models.CASCADE, related_name="policy_override"
    )
    allow = models.BooleanField()

    def __str__(self) -> str:
        return f"{self.org_unit}: {'allow' if self.allow else 'deny'}"


class PolicyChange(models.Model):
    """One save of the policy: the audit record and the progress of its propagation."""

    domain = models.ForeignKey(
        "directory.Domain", on_delete=models.CASCADE, related_name="policy_changes"
    )
    org_unit = models.ForeignKey(
        "directory.OrgUnit", null=True, blank=True, on_delete=models.SET_NULL
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=320)  # kept when the account is deleted
    scope_label = models.CharField(max_length=1000, blank=True)  # the OU's path, kept likewise
    created_at = models.DateTimeField(default=timezone.now)
    old_setting = models.CharField(max_length=7, choices=Setting.choices)
    new_setting = models.CharField(max_length=7, choices=Setting.choices)
    note = models.CharField(max_length=300, blank=True)  # e.g. an OU move that changed values
    version = models.PositiveIntegerField()
    # What propagation writes: the scope's effective value after the save, to the accounts of the
    # OUs it governs (snapshot at save time; sub-OUs that override are not in the list).
    applied_value = models.BooleanField(default=False)
    unit_ids = models.JSONField(default=list)
    accounts_total = models.PositiveIntegerField(default=0)
    accounts_applied = models.PositiveIntegerField(default=0)
    # Resume point: every governed account with a pk up to here has been handled.
    cursor_pk = models.BigIntegerField(default=0)
    # A worker holds the change until then; beat restarts it only once the lease has run out.
    lease_until = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    superseded = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["domain", "version"], name="one_change_per_version"),
        ]
        # The audit log pages through one domain's changes, newest first.
        indexes = [
            models.Index(fields=["domain", "-created_at", "-id"], name="policychange_domain_recent")
        ]

    def __str__(self) -> str:
        return f"{self.domain} v{self.version}: {self.old_setting} -> {self.new_setting}"

    @property
    def shown_applied(self) -> int:
        # Accounts created in or moved into a governed OU meanwhile can push the count past the
        # total taken at save time; never show "12 of 10".
        return min(self.accounts_applied, self.accounts_total)

    @property
    def is_propagating(self) -> bool:
        return self.finished_at is None and not self.superseded
