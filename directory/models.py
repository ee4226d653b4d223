"""Domains, organisational units and accounts: who exists and who administers what."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from mailkit.addresses import domain_of, normalize_address

if TYPE_CHECKING:
    from django.db.models.fields.related_descriptors import ManyRelatedManager


def _new_token() -> str:
    return secrets.token_urlsafe(24)


class DomainQuerySet(models.QuerySet):
    def for_admin(self, account: Account) -> DomainQuerySet:
        """Domains this account may administer: all for an operator, its own for a domain admin."""
        if not account.is_authenticated:
            return self.none()
        if account.is_superuser:
            return self.all()
        return self.filter(admins=account)


class Domain(models.Model):
    name = models.CharField(_("domain name"), max_length=253, unique=True)
    outbound_gateway = models.OneToOneField(
        "gateways.SmtpServer",
        verbose_name=_("outbound gateway"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="gateway_of_domain",
        help_text=_("Smarthost for the domain path. Empty: deliver directly to recipients' MX."),
    )
    admins: models.ManyToManyField[Account, Any] = models.ManyToManyField(
        "Account", blank=True, related_name="administered_domains", verbose_name=_("admins")
    )
    require_tls_direct = models.BooleanField(
        _("require TLS for direct delivery"),
        default=False,
        help_text=_(
            "Without an outbound gateway, mail goes straight to the recipients' mail servers. "
            "Off: TLS whenever they offer it. On: only over TLS with a valid certificate; "
            "servers that cannot do that get no mail (it waits and retries)."
        ),
    )

    require_two_step_for_admins = models.BooleanField(
        _("require two-step verification for admins"),
        default=False,
        help_text=_(
            "Admins of this domain must sign in with an authenticator app code. Those without "
            "one are sent to set it up after signing in, and after the grace period cannot use "
            "the console until they have."
        ),
    )
    # Ownership: a domain added here may send only once its DNS carries
    # ``sendgate-verification=<token>`` in a TXT record (or an operator vouched for it).
    verification_token = models.CharField(max_length=64, default=_new_token, editable=False)
    verified_at = models.DateTimeField(_("verified at"), null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = DomainQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_verified(self) -> bool:
        return self.verified_at is not None

    @property
    def verification_record(self) -> str:
        """The TXT record text that proves ownership."""
        return f"sendgate-verification={self.verification_token}"

    def mark_verified(self) -> None:
        self.verified_at = timezone.now()

    @property
    def root_unit(self) -> OrgUnit:
        return self.org_units.get(parent__isnull=True)


class OrgUnitQuerySet(models.QuerySet):
    def paths(self, domain_id: int) -> dict[int, str]:
        """Every OU's path (``example.com/Sales/EMEA``) from one query, however deep the tree."""
        rows = {
            pk: (parent, name)
            for pk, parent, name in self.filter(domain_id=domain_id).values_list(
                "pk", "parent_id", "name"
            )
        }
        paths: dict[int, str] = {}

        def path_of(pk: int) -> str:
            chain = []
            current: int | None = pk
            while current is not None and current not in paths:
                chain.append(current)
                current = rows[current][0]
            prefix = paths[current] if current is not None else ""
            for node in reversed(chain):
                prefix = f"{prefix}/{rows[node][1]}" if prefix else rows[node][1]
                paths[node] = prefix
            return paths[pk]

        for pk in rows:
            path_of(pk)
        return paths


class OrgUnit(models.Model):
    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="org_units")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    name = models.CharField(_("name"), max_length=100)
    # The OU's effective "allow per-user outbound gateways" value and the policy version that
    # wrote it. The policy app computes and writes it (with every change it records); accounts
    # created or moved here start from it, so they have nothing to catch up on.
    gateways_allowed = models.BooleanField(default=False)
    policy_version = models.PositiveIntegerField(default=0)

    objects = OrgUnitQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["domain"], condition=Q(parent__isnull=True), name="one_root_unit_per_domain"
            ),
            models.UniqueConstraint(fields=["parent", "name"], name="unique_unit_name_per_parent"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        if self._state.adding and self.parent_id is not None:
            # A new OU has no setting of its own yet: it inherits its parent's value.
            parent = OrgUnit.objects.only("gateways_allowed", "policy_version").get(
                pk=self.parent_id
            )
            self.gateways_allowed, self.policy_version = (
                parent.gateways_allowed,
                parent.policy_version,
            )
        super().save(*args, **kwargs)

    @property
    def is_root(self) -> bool:
        return self.parent_id is None

    def is_empty(self) -> bool:
        """No sub-OUs and no accounts: only then may it be deleted (nothing is left homeless)."""
        return not self.children.exists() and not self.accounts.exists()

    def path(self) -> str:
        """``example.com/Sales/EMEA``: how the console and `manage.py policy` name an OU."""
        return OrgUnit.objects.paths(self.domain_id)[self.pk]


class AccountManager(BaseUserManager["Account"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra) -> Account:
        email = normalize_address(email)
        if "domain" not in extra:
            extra["domain"] = Domain.objects.get(name=domain_of(email))
        domain = extra["domain"]
        if "org_unit" not in extra and domain is not None:
            extra["org_unit"] = domain.root_unit
        if extra.get("org_unit") is not None:
            # Born with its OU's effective value, so propagation has nothing to catch up on. Read
            # from the database: the caller's OU object may predate the latest policy change.
            allowed, version = OrgUnit.objects.values_list(
                "gateways_allowed", "policy_version"
            ).get(pk=extra["org_unit"].pk)
            extra.setdefault("gateways_allowed", allowed)
            extra.setdefault("policy_version", version)
        account = self.model(email=email, **extra)
        account.set_password(password)
        account.save(using=self._db)
        return account

    def create_superuser(self, email: str, password: str | None = None, **extra) -> Account:
        extra.setdefault("is_superuser", True)
        extra.setdefault("domain", Domain.objects.filter(name=domain_of(email)).first())
        return self.create_user(email, password, **extra)


class Account(AbstractBaseUser, PermissionsMixin):
    """A person who sends mail. Domain admin: member of Domain.admins; operator: superuser."""

    email = models.EmailField(_("primary address"), unique=True)
    display_name = models.CharField(_("display name"), max_length=200, blank=True)
    domain = models.ForeignKey(Domain, null=True, on_delete=models.PROTECT, related_name="accounts")
    if TYPE_CHECKING:  # the reverse of Domain.admins, which django-stubs' plugin leaves out
        administered_domains: ManyRelatedManager[Domain, Any]
    org_unit = models.ForeignKey(
        OrgUnit, null=True, on_delete=models.PROTECT, related_name="accounts"
    )
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)
    # The effective "allow per-user outbound gateways" value, written by policy propagation.
    # Routing reads this at every delivery attempt.
    gateways_allowed = models.BooleanField(default=False)
    policy_version = models.PositiveIntegerField(default=0)
    reply_from_received_address = models.BooleanField(
        _("reply from the address the mail was sent to"), default=True
    )
    # An IANA zone name the console shows this person's times in; empty: the instance's zone.
    # Checked against the zones this server knows by the preferences form (directory.time_zones).
    time_zone = models.CharField(_("time zone"), max_length=64, blank=True, default="")
    # The CSV import that created the account; its invitations are sent from there in batches.
    imported_by = models.ForeignKey(
        "AccountImport", null=True, blank=True, on_delete=models.SET_NULL, related_name="accounts"
    )

    objects = AccountManager()

    class Meta:
        indexes = [
            # The accounts page pages through one domain by address (keyset pagination).
            models.Index(fields=["domain", "email"], name="account_domain_email"),
            models.Index(fields=["domain", "org_unit", "email"], name="account_domain_unit_email"),
            # An OU's members page through by address.
            models.Index(fields=["org_unit", "email", "id"], name="account_unit_email"),
            # A submission login looks the account up by address in any case (email__iexact,
            # which is UPPER(email) = UPPER(%s) on PostgreSQL): without this, a table scan.
            models.Index(Upper("email"), name="account_email_upper"),
        ]

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"

    def __str__(self) -> str:
        return self.email

    @property
    def is_staff(self) -> bool:
        return self.is_superuser

    @property
    def is_domain_admin(self) -> bool:
        return self.is_superuser or self.administered_domains.exists()

    def own_domain_names(self) -> frozenset[str]:
        """Hosted domains whose addresses need no Sender: header when this account uses them."""
        return frozenset({self.domain.name}) if self.domain else frozenset()


class AuditEvent(models.Model):
    """One change to a domain's directory: accounts, admins, the gateway, held mail.

    Policy saves have their own record (policy.PolicyChange); the audit page shows both.
    """

    class Action(models.TextChoices):
        DOMAIN_ADDED = "domain_added", _("Domain added")
        DOMAIN_VERIFIED = "domain_verified", _("Domain ownership verified")
        ACCOUNT_ADDED = "account_added", _("Account added")
        ACCOUNTS_IMPORTED = "accounts_imported", _("Accounts imported")
        INVITATION_SENT = "invitation_sent", _("Invitation sent")
        PASSWORD_RESET_SENT = "password_reset_sent", _("Password reset link sent")
        ACCOUNT_DEACTIVATED = "account_deactivated", _("Account deactivated")
        ACCOUNT_REACTIVATED = "account_reactivated", _("Account reactivated")
        ACCOUNT_MOVED = "account_moved", _("Account moved")
        ADMIN_GRANTED = "admin_granted", _("Domain admin granted")
        ADMIN_REVOKED = "admin_revoked", _("Domain admin revoked")
        HELD_MAIL_RELEASED = "held_mail_released", _("Held mail released for delivery")
        HELD_MAIL_DISCARDED = "held_mail_discarded", _("Held mail discarded")
        GATEWAY_CHANGED = "gateway_changed", _("Outbound gateway changed")

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="audit_events")
    actor = models.ForeignKey(
        "Account", null=True, on_delete=models.SET_NULL, related_name="+", blank=True
    )
    actor_label = models.CharField(max_length=320)  # kept when the account is deleted
    action = models.CharField(max_length=30, choices=Action.choices)
    target = models.CharField(max_length=320, blank=True)  # usually an address
    detail = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.domain}: {self.action} {self.target}"

    @classmethod
    def record(
        cls, domain: Domain, actor: Account | None, action: str, target: str = "", detail: str = ""
    ) -> AuditEvent:
        return cls.objects.create(
            domain=domain,
            actor=actor,
            actor_label=actor.email if actor is not None else "manage.py",
            action=action,
            target=target[:320],
            detail=detail[:1000],
        )


class PasswordResetRequest(models.Model):
    """One "forgot my password" request; recent rows throttle an address and a client."""

    email = models.CharField(max_length=320)  # lower-cased, whether or not an account has it
    remote_ip = models.GenericIPAddressField(null=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["email", "created_at"]),
            models.Index(fields=["remote_ip", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.email} at {self.created_at}"


class AccountImport(models.Model):
    """One applied CSV import, and the progress of the invitations it sends in the background."""

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="imports")
    actor = models.ForeignKey(
        "Account", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    filename = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    total = models.PositiveIntegerField(default=0)
    invite = models.BooleanField(default=True)
    invited = models.PositiveIntegerField(default=0)
    # Every account of this import with a pk up to here has its invitation.
    cursor_pk = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.domain}: {self.filename} ({self.total})"

    @property
    def is_sending(self) -> bool:
        return self.invite and self.finished_at is None
