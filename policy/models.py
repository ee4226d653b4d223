"""The "allow per-user outbound gateways" setting and the record of its changes."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class OutboundPolicy(models.Model):
    """The domain-wide value; off unless an admin turns it on."""

    domain = models.OneToOneField(
        "gateways.Domain", on_delete=models.CASCADE, related_name="outbound_policy"
    )
    allow_user_gateways = models.BooleanField(_("allow per-user outbound gateways"), default=False)
    version = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.domain}: {'allow' if self.allow_user_gateways else 'deny'}"


class PolicyChange(models.Model):
    """One save of the policy: the audit record and the progress of its propagation."""

    domain = models.ForeignKey(
        "gateways.Domain", on_delete=models.CASCADE, related_name="policy_changes"
    )
    org_unit = models.ForeignKey(
        "gateways.OrgUnit", null=True, blank=True, on_delete=models.SET_NULL
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=320)  # kept when the account is deleted
    created_at = models.DateTimeField(default=timezone.now)
    old_value = models.BooleanField()
    new_value = models.BooleanField()
    version = models.PositiveIntegerField()
    accounts_total = models.PositiveIntegerField(default=0)
    accounts_applied = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)
    superseded = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["domain", "version"], name="one_change_per_version"),
        ]

    def __str__(self) -> str:
        return f"{self.domain} v{self.version}: {self.old_value} -> {self.new_value}"

    @property
    def is_propagating(self) -> bool:
        return self.finished_at is None and not self.superseded
