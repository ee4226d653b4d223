"""DKIM keys, one or more per hosted domain: waiting for DNS, active, or retiring after a switch."""

from __future__ import annotations

from datetime import timedelta

from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from directory.models import Domain
from mailkit import domainkeys
from mailkit.secrets import EncryptedTextField

# A replaced key stays published this long, so mail signed with it just before the switch still
# verifies while it waits in receivers' queues.
RETIRE_AFTER = timedelta(days=7)


class DkimKeyQuerySet(models.QuerySet):
    def active_for(self, domain_names) -> DkimKeyQuerySet:
        return self.filter(state=DkimKey.State.ACTIVE, domain__name__in=domain_names)

    def due_for_check(self, now, active_every: timedelta) -> DkimKeyQuerySet:
        """Keys beat should look up: every waiting key, and active ones not checked lately."""
        stale = Q(checked_at__isnull=True) | Q(checked_at__lt=now - active_every)
        return self.filter(Q(state=DkimKey.State.WAITING) | (Q(state=DkimKey.State.ACTIVE) & stale))


class DkimKey(models.Model):
    class Algorithm(models.TextChoices):
        RSA = domainkeys.Algorithm.RSA.value, _("RSA 2048")
        ED25519 = domainkeys.Algorithm.ED25519.value, _("Ed25519")

    class State(models.TextChoices):
        WAITING = "waiting", _("Waiting for DNS")
        ACTIVE = "active", _("Active")
        RETIRING = "retiring", _("Replaced")

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="dkim_keys")
    selector = models.CharField(_("selector"), max_length=63)
    algorithm = models.CharField(_("algorithm"), max_length=10, choices=Algorithm.choices)
    # Encrypted with the same key ring as SMTP passwords; never shown, never leaves the server.
    private_key = EncryptedTextField()
    public_key = models.TextField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.WAITING)
    created_at = models.DateTimeField(default=timezone.now)
    activated_at = models.DateTimeField(null=True, blank=True)
    retire_after = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    check_result = models.TextField(blank=True)
    # Whether the last check found exactly this key published; None: never checked.
    published = models.BooleanField(null=True)

    objects = DkimKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["domain", "selector"], name="unique_dkim_selector"),
            # One signing key per algorithm: a switch retires the old one in the same transaction.
            models.UniqueConstraint(
                fields=["domain", "algorithm"],
                condition=Q(state="active"),
                name="one_active_dkim_key_per_algorithm",
            ),
        ]

    def __str__(self) -> str:
        return self.record_name

    @property
    def record_name(self) -> str:
        return domainkeys.record_name(self.selector, self.domain.name)

    @property
    def record_text(self) -> str:
        return domainkeys.record_text(domainkeys.Algorithm(self.algorithm), self.public_key)

    @property
    def zone_file_text(self) -> str:
        return domainkeys.zone_file_text(self.record_text)

    @property
    def may_be_deleted(self) -> bool:
        """Waiting keys never signed anything; a replaced key once its week is over."""
        if self.state == self.State.WAITING:
            return True
        return (
            self.state == self.State.RETIRING
            and self.retire_after is not None  # set whenever a key starts retiring
            and timezone.now() >= self.retire_after
        )

    def activate(self) -> None:
        """Start signing with this key; the active key of its algorithm becomes "replaced"."""
        now = timezone.now()
        with transaction.atomic():
            DkimKey.objects.filter(
                domain_id=self.domain_id, algorithm=self.algorithm, state=self.State.ACTIVE
            ).exclude(pk=self.pk).update(state=self.State.RETIRING, retire_after=now + RETIRE_AFTER)
            self.state, self.activated_at = self.State.ACTIVE, now
            self.save(update_fields=["state", "activated_at"])
