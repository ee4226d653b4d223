"""End users' passwords: change it, or get a reset link by mail (rate-limited, no enumeration)."""

from __future__ import annotations

import html
import re

from django.urls import reverse

from outbox.models import Message

from .conftest import PASSWORD
from .test_domains import mail_link, set_password_through_link


def test_change_my_password_keeps_me_logged_in_and_the_old_one_stops_working(client, people):
    client.login(username=people.user.email, password=PASSWORD)
    url = reverse("password_change")
    wrong = client.post(
        url,
        {"old_password": "nope", "new_password1": "fresh secret 77", "new_password2": "x"},
    ).content.decode()
    assert "Your old password was entered incorrectly" in html.unescape(wrong)
    response = client.post(
        url,
        {
            "old_password": PASSWORD,
            "new_password1": "fresh secret 77",
            "new_password2": "fresh secret 77",
        },
        follow=True,
    )
    assert "Your password is changed." in response.content.decode()
    assert client.get(reverse("alias_list")).status_code == 200  # still logged in
    client.logout()
    assert not client.login(username=people.user.email, password=PASSWORD)
    assert client.login(username=people.user.email, password="fresh secret 77")


def forgot(client, address: str) -> str:
    response = client.post(reverse("password_forgot"), {"email": address}, follow=True)
    return html.unescape(response.content.decode())


def test_forgot_password_mails_a_link_and_answers_the_same_for_unknown_addresses(client, people):
    known = forgot(client, "ANN@example.com")
    unknown = forgot(client, "nobody@example.com")
    assert "a link to choose a new password is on its way" in known

    def flash(page: str, address: str) -> str:
        return re.search(r'<p class="flash[^>]*>(.*?)</p>', page).group(1).replace(address, "X")

    assert flash(known, "ann@example.com") == flash(unknown, "nobody@example.com")
    [mail] = Message.objects.all()
    assert mail.recipients == ["ann@example.com"]
    link = mail_link(mail)
    set_password_through_link(client, link, "recovered secret 5")
    assert client.login(username="ann@example.com", password="recovered secret 5")


def test_forgot_password_is_rate_limited_per_address(client, people, settings):
    settings.SENDGATE_PASSWORD_RESETS_PER_HOUR = 2
    for _ in range(4):
        page = forgot(client, "ann@example.com")
        assert "is on its way" in page  # the answer never changes
    assert Message.objects.count() == 2


def test_deactivated_accounts_get_no_reset_mail(client, people):
    people.user.is_active = False
    people.user.save()
    forgot(client, "ann@example.com")
    assert not Message.objects.exists()


def test_login_page_links_to_forgot_password(client, db):
    assert reverse("password_forgot") in client.get(reverse("login")).content.decode()
