"""Sign in with a mail provider instead of a password: the consent round trip, XOAUTH2 delivery,
token refresh, and what happens when the sign-in is revoked. Real parts: a local OAuth 2.0
authorization server over HTTPS and an aiosmtpd server that checks the tokens it issued."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from email import message_from_bytes
from email.policy import default
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from gateways import health
from gateways.models import SendAsAlias, SmtpServer
from gateways.oauth_views import SESSION_KEY
from mailkit.smtp import Security, Target, run_session
from outbound import delivery
from outbound.intake import accept_message
from outbox.models import Message
from policy.propagation import propagate
from policy.service import set_domain_policy

from .conftest import PASSWORD, free_port, submitted
from .oauth_peers import CLIENT_SECRET, start_token_smtp

BOB = "bob@elsewhere.test"


@pytest.fixture
def ann(client, people, oauth_world):
    propagate(set_domain_policy(people.domain, True, people.admin).pk)
    people.user.refresh_from_db()
    client.login(username=people.user.email, password=PASSWORD)
    alias = SendAsAlias.objects.create(
        account=people.user, address="ann@partner.org", state=SendAsAlias.State.VERIFIED
    )
    return people, alias


def start_sign_in(client, alias: SendAsAlias):
    response = client.post(reverse("alias_sign_in", args=[alias.pk, "generic"]))
    assert response.status_code == 302, response.content
    return response["Location"]


def callback_path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def sign_in(client, world, alias: SendAsAlias):
    """Start, let the user press "Allow" at the provider, and follow the redirect back."""
    return client.get(callback_path(world.auth.approve(start_sign_in(client, alias))))


def server_of(alias: SendAsAlias) -> SmtpServer:
    alias.refresh_from_db()
    return alias.smtp_server


def attempt(message: Message) -> Message:
    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    delivery.deliver(message.pk)
    message.refresh_from_db()
    return message


def notices_for(people) -> list[str]:
    return [
        message_from_bytes(bytes(m.raw), policy=default).get_content()
        for m in Message.objects.filter(kind=Message.Kind.REPORT, account=people.user)
    ]


def database_text() -> str:
    """Every value of every table, as a database dump would show it."""
    dump = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            for row in cursor.fetchall():
                dump.extend(
                    bytes(v).decode("latin-1") if isinstance(v, bytes | memoryview) else str(v)
                    for v in row
                )
    return "\n".join(dump)


def test_signing_in_connects_the_alias_and_mail_goes_out_by_xoauth2_with_no_secret_stored(
    client, ann, oauth_world
):
    people, alias = ann
    page = client.get(reverse("alias_edit", args=[alias.pk])).content.decode()
    assert "Sign in with Test Mail" in page

    consent_url = start_sign_in(client, alias)
    consent = parse_qs(urlsplit(consent_url).query)
    assert consent_url.startswith(oauth_world.auth.url + "/authorize?")
    assert consent["code_challenge_method"] == ["S256"] and consent["state"][0]
    assert consent["login_hint"] == ["ann@partner.org"]
    assert consent["scope"] == ["smtp.send offline_access"]
    assert consent["redirect_uri"] == ["http://localhost:8000/settings/send-as/oauth/callback/"]

    response = client.get(callback_path(oauth_world.auth.approve(consent_url)))
    assert response.status_code == 302 and response["Location"] == reverse("alias_list")
    server = server_of(alias)
    assert (server.host, server.port, server.security) == (
        "localhost",
        oauth_world.smtp_port,
        "starttls",
    )
    assert server.uses_oauth and not server.password and server.last_test_ok
    assert oauth_world.smtp.attempts == [("XOAUTH2", "ann@partner.org")]  # the connection test
    listing = client.get(reverse("alias_list")).content.decode()
    assert "signed in with Test Mail" in listing

    message = attempt(accept_message(people.user, "ann@partner.org", [BOB], "Hi", "Body"))
    assert message.state == Message.State.SENT
    [received] = oauth_world.smtp.messages
    assert received.mail_from == "ann@partner.org" and received.login == "ann@partner.org"
    assert received.tls

    dump = database_text()
    secrets = [CLIENT_SECRET, *oauth_world.auth.issued_secrets()]
    assert len(secrets) == 3  # the client secret, a refresh token, an access token
    assert [s for s in secrets if s in dump] == []


def test_pages_with_sign_in_buttons_let_their_forms_reach_the_provider_and_no_further(
    client, ann, oauth_world
):
    """The button's POST is answered with a redirect to the consent page, which browsers hold to
    the page's CSP form-action: the provider's origin is added there, and nothing else."""
    _people, alias = ann
    for url in (reverse("alias_edit", args=[alias.pk]), reverse("alias_list")):
        policy = client.get(url)["Content-Security-Policy"]
        [form_action] = [d.strip() for d in policy.split(";") if "form-action" in d]
        assert form_action == f"form-action 'self' {oauth_world.auth.url}"


def test_the_callback_only_completes_the_flow_started_in_the_same_session(
    client, ann, oauth_world, people
):
    _people, alias = ann
    returned = oauth_world.auth.approve(start_sign_in(client, alias))

    from django.test import Client

    zoe = Client()
    zoe.login(username=people.outsider.email, password=PASSWORD)
    response = zoe.get(callback_path(returned))
    assert response.status_code == 400
    assert "not valid here or has expired" in response.content.decode()
    assert oauth_world.auth.token_requests == []  # the code was never traded
    assert server_of(alias) is None

    assert client.get(callback_path(returned)).status_code == 302  # Ann's own session: works
    assert client.get(callback_path(returned)).status_code == 400  # a state works once


def test_a_flow_pointing_at_another_users_alias_is_a_404(client, ann, oauth_world, people):
    _people, alias = ann
    from django.test import Client

    zoe = Client()
    zoe.login(username=people.outsider.email, password=PASSWORD)
    session = zoe.session
    session[SESSION_KEY] = {
        "forged": {
            "alias": alias.pk,
            "provider": "generic",
            "verifier": "x" * 64,
            "mailbox": "zoe@partner.org",
            "started": __import__("time").time(),
        }
    }
    session.save()
    assert zoe.get(reverse("oauth_callback") + "?state=forged&code=abc").status_code == 404
    assert server_of(alias) is None


def test_the_pkce_verifier_is_checked_and_a_mismatch_saves_nothing(client, ann, oauth_world):
    _people, alias = ann
    returned = oauth_world.auth.approve(start_sign_in(client, alias))
    session = client.session
    for flow in session[SESSION_KEY].values():
        flow["verifier"] = "a-different-verifier-" + "x" * 40
    session.save()
    response = client.get(callback_path(returned), follow=True)
    assert "PKCE mismatch" in response.content.decode()
    assert server_of(alias) is None


def test_sign_in_is_not_offered_when_the_policy_does_not_allow_user_gateways(
    client, people, oauth_world
):
    client.login(username=people.user.email, password=PASSWORD)
    alias = SendAsAlias.objects.create(account=people.user, address="ann@partner.org")
    assert "Sign in with" not in client.get(reverse("alias_edit", args=[alias.pk])).content.decode()
    assert "sign in with" not in client.get(reverse("alias_list")).content.decode()
    response = client.post(reverse("alias_sign_in", args=[alias.pk, "generic"]))
    assert response.status_code == 404


def test_an_unknown_provider_is_a_404(client, ann):
    _people, alias = ann
    assert client.post(reverse("alias_sign_in", args=[alias.pk, "google"])).status_code == 404


def test_adding_an_address_with_sign_in_creates_it_and_goes_to_the_consent_page(
    client, ann, oauth_world
):
    people, _alias = ann
    page = client.get(reverse("alias_list")).content.decode()
    assert "Add and sign in with Test Mail" in page
    response = client.post(
        reverse("alias_list"),
        {"address": "ann@second.org", "treat_as_alias": "on", "sign_in": "generic"},
    )
    assert response["Location"].startswith(oauth_world.auth.url + "/authorize?")
    alias = SendAsAlias.objects.get(account=people.user, address="ann@second.org")
    assert not alias.is_verified  # still has to prove the address
    back = client.get(callback_path(oauth_world.auth.approve(response["Location"])))
    assert back["Location"] == reverse("alias_confirm", args=[alias.pk])
    assert server_of(alias).uses_oauth


def test_a_failed_connection_test_after_sign_in_shows_why_and_saves_nothing(
    client, ann, oauth_world, settings
):
    _people, alias = ann
    settings.SENDGATE_OAUTH_GENERIC_SMTP_PORT = free_port()  # nothing listens there
    response = sign_in(client, oauth_world, alias)
    page = response.content.decode()
    assert response.status_code == 200
    assert "refused the connection" in page and "nothing was saved" in page
    assert server_of(alias) is None


def test_a_server_without_token_sign_in_is_explained(client, ann, settings, smtp_peer, oauth_world):
    _people, alias = ann
    settings.SENDGATE_OAUTH_GENERIC_SMTP_PORT = smtp_peer().port  # passwords only
    page = sign_in(client, oauth_world, alias).content.decode()
    assert "does not offer sign-in with a token" in page and "LOGIN" in page
    assert server_of(alias) is None


def test_an_access_token_about_to_expire_is_renewed_before_sending(client, ann, oauth_world):
    people, alias = ann
    sign_in(client, oauth_world, alias)
    server = server_of(alias)
    old_token = server.oauth_access_token
    SmtpServer.objects.filter(pk=server.pk).update(
        oauth_expires_at=timezone.now() + timedelta(seconds=30)
    )
    message = attempt(accept_message(people.user, "ann@partner.org", [BOB], "Hi", "Body"))
    assert message.state == Message.State.SENT
    assert oauth_world.auth.refreshes() == 1
    server = server_of(alias)
    assert server.oauth_access_token != old_token
    assert server.oauth_expires_at > timezone.now() + timedelta(minutes=50)


def test_a_refused_cached_token_is_renewed_and_the_message_retried_at_once(
    client, ann, oauth_world
):
    people, alias = ann
    sign_in(client, oauth_world, alias)
    oauth_world.auth.expire_access_tokens()  # the provider dropped it early; we still cache it
    message = attempt(accept_message(people.user, "ann@partner.org", [BOB], "Hi", "Body"))
    assert message.state == Message.State.DEFERRED and message.next_attempt_at <= timezone.now()
    assert not server_of(alias).is_paused and notices_for(people) == []

    delivery.deliver(message.pk)  # due at once: no backoff
    message.refresh_from_db()
    assert message.state == Message.State.SENT and oauth_world.auth.refreshes() == 1


def test_535_to_a_freshly_renewed_token_pauses_the_gateway(client, ann, oauth_world, monkeypatch):
    people, alias = ann
    sign_in(client, oauth_world, alias)
    monkeypatch.setattr(oauth_world.auth, "accepts", lambda token: False)  # e.g. SMTP AUTH off
    message = attempt(accept_message(people.user, "ann@partner.org", [BOB], "Hi", "Body"))
    assert not server_of(alias).is_paused  # the cached token might just be stale
    message = attempt(message)
    server = server_of(alias)
    assert server.is_paused and "refused the sign-in token" in server.pause_reason
    assert message.state == Message.State.DEFERRED
    [notice] = notices_for(people)
    assert "sign in again" in notice


def test_a_revoked_sign_in_pauses_holds_the_mail_and_signing_in_again_sends_it(
    client, ann, oauth_world
):
    people, alias = ann
    sign_in(client, oauth_world, alias)
    oauth_world.auth.revoke_everything()
    SmtpServer.objects.filter(pk=server_of(alias).pk).update(oauth_expires_at=timezone.now())

    message = attempt(accept_message(people.user, "ann@partner.org", [BOB], "Hi", "Body"))
    server = server_of(alias)
    assert server.is_paused and "revoked" in server.pause_reason
    assert message.state == Message.State.DEFERRED
    [notice] = notices_for(people)
    assert "sign in again" in notice and "not sent any other way" in notice

    tried = len(oauth_world.smtp.attempts)
    message = attempt(message)  # while paused: held, not tried, not sent another way
    assert len(oauth_world.smtp.attempts) == tried
    assert message.state == Message.State.DEFERRED and "Sign in again" in message.last_reply
    assert len(notices_for(people)) == 1  # told once
    edit = client.get(reverse("alias_edit", args=[alias.pk])).content.decode()
    assert "stopped working" in edit and "Sign in with Test Mail again" in edit

    Message.objects.filter(pk=message.pk).update(
        next_attempt_at=timezone.now() + timedelta(hours=1)
    )
    assert sign_in(client, oauth_world, alias).status_code == 302
    assert not server_of(alias).is_paused
    message.refresh_from_db()
    assert message.next_attempt_at <= timezone.now()  # released, not waiting for its retry
    delivery.deliver(message.pk)
    message.refresh_from_db()
    assert message.state == Message.State.SENT
    assert [m.mail_from for m in oauth_world.smtp.messages] == ["ann@partner.org"]


def test_the_daily_retest_renews_the_token_and_pauses_a_revoked_sign_in(client, ann, oauth_world):
    people, alias = ann
    sign_in(client, oauth_world, alias)
    server = server_of(alias)
    SmtpServer.objects.filter(pk=server.pk).update(oauth_expires_at=timezone.now())
    health.retest(server.pk)
    server = server_of(alias)
    assert not server.is_paused and oauth_world.auth.refreshes() == 1
    assert server.last_tested_at is not None

    oauth_world.auth.revoke_everything()
    SmtpServer.objects.filter(pk=server.pk).update(oauth_expires_at=timezone.now())
    health.retest(server.pk)
    assert server_of(alias).is_paused
    [notice] = notices_for(people)
    assert "sign in again" in notice


def test_saving_a_paused_signed_in_server_without_a_password_tests_it_with_the_sign_in(
    client, ann, oauth_world
):
    """The worker's connection test of an edit that gives no password dials with the saved
    sign-in (not with no credentials), and a pass keeps the sign-in and ends the pause."""
    _people, alias = ann
    sign_in(client, oauth_world, alias)
    SmtpServer.objects.filter(pk=server_of(alias).pk).update(
        paused_at=timezone.now(), pause_reason="535 for a while"
    )
    tried = len(oauth_world.smtp.attempts)
    response = submitted(
        client,
        client.post(
            reverse("alias_edit", args=[alias.pk]),
            {
                "display_name": "Ann at Partner",
                "treat_as_alias": "on",
                "smtp_host": "localhost",
                "smtp_port": oauth_world.smtp_port,
                "smtp_security": "starttls",
                "smtp_username": "ann@partner.org",
                "smtp_password": "",
            },
        ),
    )
    assert response.status_code == 200
    assert oauth_world.smtp.attempts[tried:] == [("XOAUTH2", "ann@partner.org")]
    server = server_of(alias)
    assert server.uses_oauth and server.oauth_refresh_token and not server.password
    assert not server.is_paused and server.last_test_ok
    assert alias.display_name == "Ann at Partner"


def test_a_password_replaces_the_sign_in(client, ann, oauth_world, smtp_peer):
    _people, alias = ann
    sign_in(client, oauth_world, alias)
    peer = smtp_peer("ann@partner.org", "partner-secret")
    response = submitted(
        client,
        client.post(
            reverse("alias_edit", args=[alias.pk]),
            {
                "display_name": "",
                "treat_as_alias": "on",
                "smtp_host": "localhost",
                "smtp_port": peer.port,
                "smtp_security": "starttls",
                "smtp_username": "ann@partner.org",
                "smtp_password": "partner-secret",
            },
        ),
    )
    assert response.status_code == 200
    server = server_of(alias)
    assert not server.uses_oauth and not server.oauth_refresh_token
    assert server.password == "partner-secret"


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_smtp_auth_with_a_token_by_either_mechanism(oauth_world, pki, mechanism):
    port = free_port()
    controller, handler = start_token_smtp(
        port=port, tls=pki.server_context, auth=oauth_world.auth, mechanisms=(mechanism,)
    )
    try:
        _status, issued = oauth_world.auth.token({"client_id": "x"})  # refused: wrong client
        assert "error" in issued
        good = oauth_world.auth._issue("ann@partner.org", new_refresh=False)["access_token"]

        def session(token: str):
            target = Target(
                host="localhost",
                port=port,
                security=Security.STARTTLS,
                username="ann@partner.org",
                oauth_token=token,
            )
            return asyncio.run(run_session(target, mail_from="ann@partner.org"))

        accepted = session(good)
        assert accepted.ok, accepted.error
        assert f"C: AUTH {mechanism} (token hidden)" in accepted.transcript
        assert good not in "\n".join(accepted.transcript)
        refused = session("not-a-token")
        assert not refused.ok and refused.auth_failed
        assert "refused the sign-in token (535" in refused.error
        assert handler.attempts == [(mechanism, "ann@partner.org")] * 2
    finally:
        controller.stop()


def test_an_anonymous_callback_is_sent_to_login(client, db):
    response = client.get(reverse("oauth_callback") + "?state=x&code=y")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_a_half_configured_provider_fails_the_system_check(settings):
    from django.core.checks import run_checks

    settings.SENDGATE_OAUTH_GOOGLE_CLIENT_ID = "id.apps.googleusercontent.com"
    settings.SENDGATE_OAUTH_GOOGLE_CLIENT_SECRET = ""
    settings.SENDGATE_OAUTH_GENERIC_CLIENT_ID = "sendgate"
    settings.SENDGATE_OAUTH_GENERIC_CLIENT_SECRET = "s"
    settings.SENDGATE_OAUTH_GENERIC_TOKEN_URL = "http://login.example.net/token"
    settings.SENDGATE_OAUTH_GENERIC_SMTP_SECURITY = "none"
    messages = [e.msg for e in run_checks() if e.id.startswith("sendgate.")]
    assert (
        "SENDGATE_OAUTH_GOOGLE_CLIENT_ID is set but SENDGATE_OAUTH_GOOGLE_CLIENT_SECRET is empty."
        in messages
    )
    assert any("needs SENDGATE_OAUTH_GENERIC_NAME" in m and "AUTHORIZE_URL" in m for m in messages)
    assert "SENDGATE_OAUTH_GENERIC_TOKEN_URL must be an https:// URL." in messages
    assert "SENDGATE_OAUTH_GENERIC_SMTP_SECURITY must be starttls or tls." in messages


def test_two_workers_renewing_at_once_use_one_rotated_refresh_token(transactional_db, oauth_world):
    """The provider rotates refresh tokens: were both to renew with the same one, the second
    would get invalid_grant and pause a working gateway. The row lock makes the second wait and
    take the first one's token."""
    import threading

    from django.db import connections

    from gateways import tokens
    from mailkit import oauth

    provider = oauth.configured_providers()["generic"]
    code_grant = oauth_world.auth._issue("ann@partner.org", new_refresh=True)
    server = SmtpServer(host="localhost", port=oauth_world.smtp_port, username="ann@partner.org")
    server.sign_in(
        "generic",
        oauth.Tokens(code_grant["access_token"], code_grant["refresh_token"], timezone.now()),
    )
    server.save()
    assert provider.key == "generic"
    oauth_world.auth.token_delay = 0.5
    outcomes: list[object] = []

    def renew() -> None:
        try:
            copy = SmtpServer.objects.get(pk=server.pk)
            outcomes.append(tokens.ensure_fresh_token(copy))
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            outcomes.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=renew) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes, key=str) == [False, True]  # one renewed, the other used its token
    assert oauth_world.auth.refreshes() == 1
    fresh = SmtpServer.objects.get(pk=server.pk)
    assert oauth_world.auth.accepts(fresh.oauth_access_token)


def test_a_shared_mailbox_is_sent_as_with_a_persons_own_sign_in(client, ann, oauth_world):
    people, alias = ann
    page = client.get(reverse("alias_edit", args=[alias.pk])).content.decode()
    assert 'name="mailbox"' in page and 'value="ann@partner.org"' in page
    start = client.post(
        reverse("alias_sign_in", args=[alias.pk, "generic"]), {"mailbox": "Ann.Person@Partner.org"}
    )
    assert parse_qs(urlsplit(start["Location"]).query)["login_hint"] == ["Ann.Person@partner.org"]
    client.get(callback_path(oauth_world.auth.approve(start["Location"])))
    assert server_of(alias).username == "Ann.Person@partner.org"
    message = attempt(accept_message(people.user, "ann@partner.org", [BOB], "Hi", "Body"))
    assert message.state == Message.State.SENT
    [received] = oauth_world.smtp.messages
    assert received.login == "Ann.Person@partner.org" and received.mail_from == "ann@partner.org"


def test_a_malformed_mailbox_is_refused_before_leaving_for_the_provider(client, ann, oauth_world):
    _people, alias = ann
    response = client.post(
        reverse("alias_sign_in", args=[alias.pk, "generic"]),
        {"mailbox": "ann@partner.org\r\nRCPT TO:<x@y>"},
        follow=True,
    )
    assert "The mailbox to sign in with is not valid" in response.content.decode()
    assert oauth_world.auth.consents == [] and server_of(alias) is None


def test_declining_at_the_provider_says_so_and_saves_nothing(client, ann, oauth_world):
    _people, alias = ann
    state = parse_qs(urlsplit(start_sign_in(client, alias)).query)["state"][0]
    response = client.get(
        reverse("oauth_callback"),
        {"state": state, "error": "access_denied", "error_description": "The user declined."},
        follow=True,
    )
    assert "The sign-in was not completed: The user declined." in response.content.decode()
    assert server_of(alias) is None and oauth_world.auth.token_requests == []


@pytest.mark.worker
def test_signing_in_again_wakes_a_worker_that_sends_the_held_mail_at_once(
    client, ann, oauth_world, worker_factory
):
    """No sweeper runs here: only the wake-up the sign-in sends can deliver the held mail."""
    from .conftest import wait_for

    people, alias = ann
    sign_in(client, oauth_world, alias)
    worker = worker_factory(**oauth_world.env())
    oauth_world.auth.revoke_everything()
    SmtpServer.objects.filter(pk=server_of(alias).pk).update(oauth_expires_at=timezone.now())
    message = accept_message(people.user, "ann@partner.org", [BOB], "Held", "Body")
    wait_for(lambda: server_of(alias).is_paused, what=f"the pause\n{worker.log.read_text()}")
    message.refresh_from_db()
    assert message.state == Message.State.DEFERRED and message.next_attempt_at > timezone.now()
    assert oauth_world.smtp.messages == []

    assert sign_in(client, oauth_world, alias).status_code == 302
    [received] = wait_for(
        lambda: oauth_world.smtp.messages, what=f"the held mail\n{worker.log.read_text()}"
    )
    assert received.message["Subject"] == "Held" and received.login == "ann@partner.org"
    message.refresh_from_db()
    assert message.state == Message.State.SENT
