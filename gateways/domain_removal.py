"""Removing a hosted domain with everything in it.

It sits in gateways because it must also delete the SMTP servers (and their stored passwords) of
the domain's gateway and of its users' aliases; the apps below cannot see those.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from directory.accounts import DirectoryError
from directory.models import Account, Domain, OrgUnit
from outbox.models import Message
from outbox.onboarding import queued_count

from .models import SmtpServer


def remove_domain(domain: Domain, *, force: bool = False) -> None:
    """Delete the domain, its OUs, accounts, aliases, SMTP servers and mail.

    Refused while its accounts have mail still to deliver, unless ``force``: that mail is lost.
    """
    with transaction.atomic():
        waiting = queued_count(domain)
        if waiting and not force:
            raise DirectoryError(
                _(
                    "%(domain)s still has %(count)d messages to deliver: wait until they are "
                    "delivered, or remove it anyway with --force (they are lost)."
                )
                % {"domain": domain.name, "count": waiting}
            )
        accounts = Account.objects.filter(domain=domain)
        servers = list(
            SmtpServer.objects.filter(
                Q(alias__account__domain=domain) | Q(gateway_of_domain=domain)
            ).values_list("pk", flat=True)
        )
        Message.objects.filter(account__in=accounts).delete()
        accounts.delete()
        # OUs protect their children: delete the deepest first.
        paths = OrgUnit.objects.paths(domain.pk)
        for pk in sorted(paths, key=lambda pk: paths[pk].count("/"), reverse=True):
            OrgUnit.objects.filter(pk=pk).delete()
        domain.delete()
        SmtpServer.objects.filter(pk__in=servers).delete()
