"""Operators: `manage.py domain`, the operator pages, and domain ownership by DNS TXT record."""

from __future__ import annotations

import io
import re
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from directory.models import Account, AuditEvent, Domain, OrgUnit
from gateways.models import SendAsAlias, SmtpServer
from mailkit import dns as sendgate_dns
from outbound.intake import accept_message
from outbound.submission import Refused, submit
from outbox.models import Message
from policy.models import OutboundPolicy

from .conftest import PASSWORD
from .fake_dns import TIMEOUT, FakeResolver, txt


def run(*args: str, stdin: str | None = None, monkeypatch=None) -> str:
    out = io.StringIO()
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    call_command(*args, stdout=out)
    return out.getvalue()


def link_in(text: str) -> str:
    return re.search(r"https?://\S+/password/set/\S+/", text).group(0)


def mail_link(message: Message) -> str:
    """The set-password link in a queued mail, read as a mail client would (decoded body)."""
    body = message_from_bytes(bytes(message.raw), policy=default_policy).get_body().get_content()
    return link_in(body)


def set_password_through_link(client, link: str, password: str) -> None:
    path = link.split("://", 1)[1].split("/", 1)[1]
    page = client.get("/" + path, follow=True)
    assert "Choose your password" in page.content.decode()
    form_url = page.redirect_chain[-1][0]
    response = client.post(
        form_url, {"new_password1": password, "new_password2": password}, follow=True
    )
    assert "Your password is set" in response.content.decode()


def test_domain_add_creates_top_ou_deny_policy_and_an_admin_who_sets_a_password(client, db):
    out = run("domain", "add", "example.org", "--admin", "Alice@Example.org", "--name", "Alice")

    domain = Domain.objects.get(name="example.org")
    assert not domain.is_verified
    assert OrgUnit.objects.get(domain=domain, parent=None).name == "example.org"
    assert OutboundPolicy.objects.get(domain=domain).allow_user_gateways is False
    alice = Account.objects.get(email="Alice@example.org")
    assert list(domain.admins.all()) == [alice] and not alice.has_usable_password()
    assert f"sendgate-verification={domain.verification_token}" in out

    link = link_in(out)
    set_password_through_link(client, link, "a long new secret 42")
    assert client.login(username="Alice@example.org", password="a long new secret 42")
    # One time only: the same link does not work again.
    client.logout()
    page = client.get("/" + link.split("://", 1)[1].split("/", 1)[1], follow=True)
    assert "does not work any more" in page.content.decode()


def test_domain_add_with_password_from_stdin_and_verified(client, db, monkeypatch):
    out = run(
        "domain",
        "add",
        "example.org",
        "--admin",
        "alice@example.org",
        "--verified",
        "--password-stdin",
        stdin="stdin secret 99\n",
        monkeypatch=monkeypatch,
    )
    assert "password/set" not in out
    assert Domain.objects.get(name="example.org").is_verified
    assert client.login(username="alice@example.org", password="stdin secret 99")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["example.org", "--admin", "alice@elsewhere.org"], "alice@elsewhere.org is not in"),
        (["not a domain", "--admin", "a@b.org"], "is not a domain name"),
        (["localhost", "--admin", "a@localhost"], "is not a domain name"),
        (["example.org", "--admin", "not-an-address"], "is not a valid address"),
    ],
)
def test_domain_add_refuses_bad_input_and_creates_nothing(db, args, error):
    with pytest.raises(CommandError, match=error):
        run("domain", "add", *args)
    assert not Domain.objects.exists() and not Account.objects.exists()


def test_domain_add_refuses_a_domain_hosted_already(people):
    with pytest.raises(CommandError, match="example.com is already hosted here"):
        run("domain", "add", "Example.COM", "--admin", "x@example.com")


def test_domain_list_and_show(people):
    listing = run("domain", "list")
    assert "example.com\tverified\t2 accounts\tadmins: admin@example.com" in listing
    shown = run("domain", "show", "example.com")
    assert "queued mail: 0" in shown and "admins: admin@example.com" in shown


def _queued(account) -> Message:
    return Message.objects.create(
        account=account,
        from_address=account.email,
        recipients=["x@elsewhere.test"],
        message_id="<q@x>",
        raw=b"Subject: q\r\n\r\nq",
    )


def test_domain_remove_refuses_while_mail_is_queued_unless_forced(people):
    _queued(people.user)
    server = SmtpServer.objects.create(host="smtp.partner.org", username="u", password="secret")
    SendAsAlias.objects.create(account=people.user, address="ann@partner.org", smtp_server=server)

    with pytest.raises(CommandError, match="still has 1 messages to deliver"):
        run("domain", "remove", "example.com")
    assert Domain.objects.filter(name="example.com").exists()

    run("domain", "remove", "example.com", "--force")
    assert not Domain.objects.filter(name="example.com").exists()
    assert not Account.objects.filter(email__endswith="@example.com").exists()
    assert not SmtpServer.objects.filter(pk=server.pk).exists()  # its password goes too
    assert Account.objects.filter(email="zoe@other.example").exists()


# --- ownership -----------------------------------------------------------------------------------


@pytest.fixture
def unverified(people):
    Domain.objects.filter(pk=people.domain.pk).update(verified_at=None)
    people.domain.refresh_from_db()
    people.user = Account.objects.select_related("domain").get(pk=people.user.pk)
    return people


def test_unverified_domain_cannot_send_by_any_intake(unverified):
    with pytest.raises(Exception, match="has not proved it owns its domain name") as compose:
        accept_message(unverified.user, unverified.user.email, ["b@x.test"], "Hi", "Body")
    assert compose.type.__name__ == "ValidationError"
    with pytest.raises(Refused, match="^550 5.7.1 example.com has not proved"):
        submit(
            unverified.user,
            unverified.user.email,
            ["b@x.test"],
            b"From: ann@example.com\r\nSubject: x\r\n\r\nx",
            "by test",
        )
    assert not Message.objects.exists()


def test_compose_page_shows_why_an_unverified_domain_cannot_send(client, unverified):
    client.login(username=unverified.user.email, password=PASSWORD)
    page = client.post(
        reverse("compose"),
        {"from_address": unverified.user.email, "to": "b@x.test", "subject": "s", "body": "b"},
    ).content.decode()
    assert "has not proved it owns its domain name yet" in page
    assert not Message.objects.exists()


def test_verification_finds_the_txt_record_and_then_the_domain_sends(unverified, monkeypatch):
    domain = unverified.domain
    table = {("example.com", "TXT"): [txt("v=spf1 -all"), txt("sendgate-verification=wrong")]}
    monkeypatch.setattr(sendgate_dns, "default_resolver", lambda: FakeResolver(table))
    with pytest.raises(CommandError, match="TXT record was not found"):
        run("domain", "verify", "example.com")

    table[("example.com", "TXT")].append(txt(domain.verification_record))
    assert "example.com is verified" in run("domain", "verify", "example.com")
    domain.refresh_from_db()
    assert domain.is_verified
    assert AuditEvent.objects.filter(action=AuditEvent.Action.DOMAIN_VERIFIED).count() == 1
    unverified.user.refresh_from_db()
    accept_message(unverified.user, unverified.user.email, ["b@x.test"], "Hi", "Body")
    assert Message.objects.count() == 1


def test_verification_says_when_dns_does_not_answer(unverified, monkeypatch):
    table = {("example.com", "TXT"): TIMEOUT}
    monkeypatch.setattr(sendgate_dns, "default_resolver", lambda: FakeResolver(table))
    with pytest.raises(CommandError, match="DNS did not answer"):
        run("domain", "verify", "example.com")


# --- the operator's pages ------------------------------------------------------------------------


@pytest.fixture
def operator(people):
    return Account.objects.create_superuser("ops@example.com", PASSWORD)


def test_operator_adds_a_domain_in_the_console_and_verifies_it(client, operator, monkeypatch):
    client.login(username=operator.email, password=PASSWORD)
    response = client.post(
        reverse("operator_domain_add"),
        {"name": "new.example", "admin": "boss@new.example", "admin_name": "Boss"},
        follow=True,
    )
    page = response.content.decode()
    domain = Domain.objects.get(name="new.example")
    assert domain.verification_record in page and "unverified" in page
    invitation = Message.objects.get(recipients=["boss@new.example"])
    assert b"/password/set/" in invitation.raw and invitation.kind == Message.Kind.REPORT

    listing = client.get(reverse("operator_domains")).content.decode()
    assert "new.example" in listing and "boss@new.example" in listing

    table = {("new.example", "TXT"): [txt(domain.verification_record)]}
    monkeypatch.setattr(sendgate_dns, "default_resolver", lambda: FakeResolver(table))
    page = client.post(reverse("operator_domain_verify", args=[domain.pk]), follow=True)
    assert "new.example is verified" in page.content.decode()
    domain.refresh_from_db()
    assert domain.is_verified


def test_operator_domain_page_shows_queue_and_admins(client, operator, people):
    _queued(people.user)
    client.login(username=operator.email, password=PASSWORD)
    page = client.get(reverse("operator_domain", args=[people.domain.pk])).content.decode()
    assert "admin@example.com" in page
    assert re.search(r"<dt>Queued</dt><dd>1</dd>", page)


def test_operator_add_form_shows_a_specific_error(client, operator):
    client.login(username=operator.email, password=PASSWORD)
    page = client.post(
        reverse("operator_domain_add"), {"name": "new.example", "admin": "boss@other.example"}
    ).content.decode()
    assert "boss@other.example is not in new.example." in page
    assert not Domain.objects.filter(name="new.example").exists()


def test_domain_admins_do_not_see_operator_pages(client, people):
    client.login(username=people.admin.email, password=PASSWORD)
    assert client.get(reverse("operator_domains")).status_code == 404
    assert client.get(reverse("operator_domain", args=[people.domain.pk])).status_code == 404
    response = client.post(reverse("operator_domain_add"), {"name": "x.example", "admin": "a@x"})
    assert response.status_code == 404


def test_adding_a_send_as_address_in_an_unverified_domain_says_why_it_cannot_send(
    client, unverified
):
    client.login(username=unverified.user.email, password=PASSWORD)
    page = client.post(
        reverse("alias_list"), {"address": "ann@partner.org", "treat_as_alias": "on"}
    ).content.decode()
    assert "has not proved it owns its domain name yet" in page
    assert not SendAsAlias.objects.exists() and not Message.objects.exists()


def test_domain_admins_see_that_their_domain_is_unverified(client, unverified):
    client.login(username=unverified.admin.email, password=PASSWORD)
    page = client.get(reverse("domain_list")).content.decode()
    assert "unverified" in page and unverified.domain.verification_record in page
