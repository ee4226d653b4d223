"""Domains, organisational units, accounts, send-as aliases and SMTP servers."""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _

from .addresses import domain_of, normalize_address, reject_control_characters
from .secrets import EncryptedTextField
from .smtp import Security, Target


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
        "SmtpServer",
        verbose_name=_("outbound gateway"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="gateway_of_domain",
        help_text=_("Smarthost for the domain path. Empty: deliver directly to recipients' MX."),
    )
    admins = models.ManyToManyField(
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

    objects = DomainQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

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

    @property
    def is_root(self) -> bool:
        return self.parent_id is None

    def is_empty(self) -> bool:
        """No sub-OUs and no accounts: only then may it be deleted (nothing is left homeless)."""
        return not self.children.exists() and not self.accounts.exists()

    def path(self) -> str:
        """``example.com/Sales/EMEA``: how the console and `manage.py policy` name an OU."""
        return OrgUnit.objects.paths(self.domain_id)[self.pk]


class AccountManager(BaseUserManager):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra) -> Account:
        email = normalize_address(email)
        if "domain" not in extra:
            extra["domain"] = Domain.objects.get(name=domain_of(email))
        domain = extra["domain"]
        if "org_unit" not in extra and domain is not None:
            extra["org_unit"] = domain.root_unit
        if domain is not None and extra["org_unit"] is not None:
            # Born with its OU's effective value, so propagation has nothing to catch up on.
            from policy.service import birth_values

            allowed, version = birth_values(domain, extra["org_unit"])
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

    objects = AccountManager()

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
    # owner fixes the password, instead of going out another way.
    paused_at = models.DateTimeField(null=True, blank=True)
    pause_reason = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_paused(self) -> bool:
        return self.paused_at is not None

    def resume(self) -> None:
        self.paused_at = None
        self.pause_reason = ""

    @classmethod
    def pause_if_running(cls, pk: int, reason: str) -> bool:
        """Pause server ``pk``; True only for the caller that actually paused it."""
        return (
            cls.objects.filter(pk=pk, paused_at__isnull=True).update(
                paused_at=timezone.now(), pause_reason=reason
            )
            == 1
        )

    def clean(self) -> None:
        reject_control_characters(self.host)
        reject_control_characters(self.username)

    def target(self) -> Target:
        """The dial parameters that delivery and the connection test both use."""
        return Target(
            host=self.host,
            port=self.port,
            security=Security(self.security),
            username=self.username,
            password=self.password or "",
        )

    def record_test(self, ok: bool, summary: str) -> None:
        self.last_test_ok = ok
        self.last_tested_at = timezone.now()
        self.last_test_summary = summary


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
    """One connection test a user ran; kept to rate-limit them and to show recent results."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    host = models.CharField(max_length=253)
    ok = models.BooleanField()
    summary = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.host}: {'ok' if self.ok else 'failed'}"
