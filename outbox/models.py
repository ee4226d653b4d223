"""The outbox: each accepted message, each attempt to deliver it, and the route words they use."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class RouteKind(models.TextChoices):
    USER_GATEWAY = "user_gateway", _("Per-user gateway")
    DOMAIN_GATEWAY = "domain_gateway", _("Domain gateway")
    DIRECT_MX = "direct_mx", _("Direct to recipient MX")


class Rule(models.TextChoices):
    """Why a route was chosen; stored on every attempt so the choice can be explained later."""

    ALIAS_GATEWAY_ALLOWED = "alias_gateway_allowed", _("Alias has a gateway and policy allows it")
    POLICY_DENIES = "policy_denies", _("Alias has a gateway but policy does not allow it")
    GATEWAY_NOT_READY = "gateway_not_ready", _("Alias gateway has not passed its connection test")
    GATEWAY_PAUSED = "gateway_paused", _("Alias gateway is paused after refusing its credentials")
    NO_ALIAS_GATEWAY = "no_alias_gateway", _("No per-user gateway for this From address")


class MessageQuerySet(models.QuerySet):
    def for_sender(self, account) -> MessageQuerySet:
        """The account's own mail: Sendgate's notices and reports to it are not in its sent mail."""
        return self.filter(account=account, kind=Message.Kind.MAIL)

    def waiting(self) -> MessageQuerySet:
        """Accepted and not finished: what a worker will still (or may again) try to send."""
        return self.filter(state__in=Message.WAITING_STATES)

    def for_domain(self, domain) -> MessageQuerySet:
        """The domain's messages, by their own ``domain`` column: no join through accounts."""
        return self.filter(domain=domain)


class Message(models.Model):
    class Kind(models.TextChoices):
        MAIL = "mail", _("Mail")
        # Sendgate's own mail: delivery reports, notices, confirmation codes (null envelope sender)
        REPORT = "report", _("Delivery report")

    class State(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SENDING = "sending", _("Sending")
        DEFERRED = "deferred", _("Deferred, will retry")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")
        # The account was deactivated: nothing leaves until an admin chooses deliver or discard.
        HELD = "held", _("Held until an admin decides")

    # Accepted and not finished (the others, sent and failed, are final).
    WAITING_STATES = (State.QUEUED, State.SENDING, State.DEFERRED, State.HELD)

    # No index of its own (db_index=False), nor the domain's: message_account_recent and
    # message_domain_recent start with them, and every index is written again at each insert
    # and at each change of state (claimed, sent), which is most of the outbox's write cost.
    account = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="messages", db_index=False
    )
    # The sender's domain when the message was accepted: the admin's delivery log filters on it
    # directly (a join through every account made a small tenant pay for a big one). Null for
    # an account without a domain (an operator).
    domain = models.ForeignKey(
        "directory.Domain",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.MAIL)
    from_address = models.EmailField()
    recipients = models.JSONField()  # envelope recipients, a list of addresses
    # Recipients still to deliver; a 2xx or a 5xx takes a recipient off this list.
    pending_recipients = models.JSONField(default=list)
    failed_recipients = models.JSONField(default=dict)  # address -> the server's reply
    subject = models.CharField(max_length=998, blank=True)
    message_id = models.CharField(max_length=255)
    raw = models.BinaryField()  # the message as accepted, before route-specific headers
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # A worker owns a SENDING message until this time; after it, the sweeper may take it back.
    lease_until = models.DateTimeField(null=True, blank=True)
    attempt_count = models.PositiveIntegerField(default=0)
    last_route = models.CharField(max_length=20, choices=RouteKind.choices, blank=True)
    last_reply = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delay_warned_at = models.DateTimeField(null=True, blank=True)
    # Set when retention removed ``raw`` (the metadata stays): the console says so.
    body_pruned_at = models.DateTimeField(null=True, blank=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"]),
            # Sent mail pages by (created_at, id); the daily sending limit counts a range of it.
            models.Index(fields=["account", "-created_at", "-id"], name="message_account_recent"),
            # The delivery log, newest first, one domain; the state comes with it for the
            # counters. The second serves a state filter and the live counters (next retry).
            models.Index(
                fields=["domain", "-created_at", "-id"],
                include=["state"],
                name="message_domain_recent",
            ),
            models.Index(
                fields=["domain", "state", "-created_at", "-id"],
                include=["next_attempt_at"],
                name="message_domain_state",
            ),
            # The log's route filter: a route the domain rarely uses would otherwise be a walk
            # through its whole log.
            models.Index(
                fields=["domain", "last_route", "-created_at", "-id"], name="message_domain_route"
            ),
            # The sweeper's due query (every 30 s and in every wake-up), one index per half of
            # its UNION ALL: waiting rows by when they are due, and claimed rows by when their
            # worker's lease runs out. Partial, so they hold the queue, not the whole log.
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(state__in=["queued", "deferred"]),
                name="message_due",
            ),
            models.Index(
                fields=["lease_until"],
                condition=models.Q(state="sending"),
                name="message_sending_lease",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.message_id} ({self.state})"

    def save(self, *args, **kwargs) -> None:
        if self._state.adding and self.domain_id is None:
            # queue() passes the domain; any other creator gets its sender's.
            self.domain_id = self.account.domain_id
        super().save(*args, **kwargs)

    def mark_sent(self, route: RouteKind, reply: str) -> None:
        self._finish(self.State.SENT, route, reply)
        self.sent_at = timezone.now()

    def mark_failed(self, route: RouteKind | str, reply: str) -> None:
        self._finish(self.State.FAILED, route, reply)

    def defer(self, until: datetime, route: RouteKind | str, reply: str) -> None:
        self._finish(self.State.DEFERRED, route, reply)
        self.next_attempt_at = until

    def _finish(self, state: str, route: str, reply: str) -> None:
        self.state = state
        self.last_route = route
        self.last_reply = reply
        self.lease_until = None


class DeliveryAttempt(models.Model):
    class Outcome(models.TextChoices):
        SENT = "sent", _("Accepted by the server")
        DEFERRED = "deferred", _("Temporary failure")
        FAILED = "failed", _("Permanent failure")

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attempts")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    route = models.CharField(max_length=20, choices=RouteKind.choices)
    rule = models.CharField(max_length=30, choices=Rule.choices)
    policy_version = models.PositiveIntegerField()
    server = models.CharField(max_length=300, blank=True)  # host:port as dialled
    envelope_from = models.EmailField()
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    reply = models.TextField(blank=True)
    # The recipient domain's TLS policy and what it decided ("MTA-STS enforce: certificate valid
    # for mx1.example.net"); empty when none applied.
    tls_policy = models.TextField(blank=True)

    class Meta:
        ordering = ["started_at", "id"]

    def __str__(self) -> str:
        return f"{self.message_id} via {self.route}: {self.outcome}"


class ManualRetry(models.Model):
    """Audit record: someone asked for deferred mail to be tried again now."""

    class Scope(models.TextChoices):
        MESSAGE = "message", _("One message")
        SERVER = "server", _("Everything waiting for one server")
        DOMAIN = "domain", _("Everything waiting in the domain")

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_by_email = models.EmailField()  # kept if the account goes
    requested_at = models.DateTimeField(default=timezone.now)
    domain = models.ForeignKey(
        "directory.Domain", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    scope = models.CharField(max_length=10, choices=Scope.choices)
    subject = models.CharField(max_length=300)  # the message's ID, the server, or the domain
    message_count = models.PositiveIntegerField()

    class Meta:
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"{self.requested_by_email}: retry {self.scope} {self.subject}"
