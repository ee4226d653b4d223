"""One date format in the console, with the time zone named: the person's own, or else the
instance's (SENDGATE_TIME_ZONE)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from django.template import Context, Template
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from directory.models import Account
from outbox.models import Message
from policy.propagation import propagate
from policy.service import set_domain_policy

from .conftest import PASSWORD


def shown(value, zone: str) -> str:
    with timezone.override(zone):
        return Template("{{ value|when }}").render(Context({"value": value}))


def test_every_template_shows_a_moment_with_date_time_and_zone():
    winter = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 15, 12, 0, tzinfo=UTC)
    assert shown(winter, "Europe/Amsterdam") == "2026-01-15 13:00 CET"
    assert shown(summer, "Europe/Amsterdam") == "2026-07-15 14:00 CEST"
    assert shown(winter, "UTC") == "2026-01-15 12:00 UTC"
    assert shown(None, "UTC") == ""


def test_the_audit_log_shows_policy_changes_and_events_in_the_instances_zone(
    client, people, settings
):
    settings.TIME_ZONE = "America/New_York"
    propagate(set_domain_policy(people.domain, True, people.admin).pk)
    client.login(username=people.admin.email, password=PASSWORD)
    page = client.get(reverse("audit_log", args=[people.domain.pk])).content.decode()
    assert " EST</td>" in page or " EDT</td>" in page
    assert "UTC</td>" not in page


# --- each person's own zone ---------------------------------------------------------------------

WINTER_NOON = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def sent_at(account, moment: datetime) -> Message:
    return Message.objects.create(
        account=account,
        from_address=account.email,
        recipients=["bob@elsewhere.test"],
        message_id=f"<{account.pk}@example.com>",
        raw=b"Subject: x\r\n\r\nx",
        subject="Winter",
        created_at=moment,
    )


def test_a_person_with_a_zone_sees_times_in_it_and_others_keep_the_instances(people, settings):
    settings.TIME_ZONE = "UTC"
    people.user.time_zone = "Europe/Amsterdam"
    people.user.save(update_fields=["time_zone"])
    sent_at(people.user, WINTER_NOON)
    sent_at(people.admin, WINTER_NOON)
    ann, dana = Client(), Client()
    ann.force_login(people.user)
    dana.force_login(people.admin)

    # One after the other, as one web worker thread would serve them: no zone carries over.
    ann_page = ann.get(reverse("sent_list")).content.decode()
    dana_page = dana.get(reverse("sent_list")).content.decode()
    anonymous_login = Client().get(reverse("login"))

    assert "2026-01-15 13:00 CET" in ann_page and "12:00 UTC" not in ann_page
    assert "2026-01-15 12:00 UTC" in dana_page and "CET" not in dana_page
    assert anonymous_login.status_code == 200
    assert timezone.get_current_timezone_name() == "UTC"  # nothing left active after a request


def test_choosing_a_zone_saves_it_and_redirects_to_a_page_in_that_zone(client, people):
    assert client.login(username=people.user.email, password=PASSWORD)
    page = client.get(reverse("preferences")).content.decode()
    assert '<option value="" selected>The instance&#x27;s (UTC)</option>' in page
    assert '<option value="Europe/Amsterdam">' in page and 'value="localtime"' not in page

    response = client.post(reverse("preferences"), {"time_zone": "Europe/Amsterdam"})

    assert response.status_code == 302 and response["Location"] == reverse("preferences")
    people.user.refresh_from_db()
    assert people.user.time_zone == "Europe/Amsterdam"
    shown = client.get(response["Location"]).content.decode()
    assert "Times are now shown in Europe/Amsterdam." in shown
    assert re.search(r"It is now \d{4}-\d\d-\d\d \d\d:\d\d CES?T\.", shown)
    assert '<option value="Europe/Amsterdam" selected>' in shown

    back = client.post(reverse("preferences"), {"time_zone": ""}, follow=True)
    assert "Times are now shown in the instance&#x27;s time zone, UTC." in back.content.decode()
    people.user.refresh_from_db()
    assert people.user.time_zone == ""


def test_an_unknown_zone_is_refused_and_nothing_changes(client, people):
    people.user.time_zone = "Asia/Tokyo"
    people.user.save(update_fields=["time_zone"])
    assert client.login(username=people.user.email, password=PASSWORD)
    for bad in ("Mars/Olympus_Mons", "localtime", "../../etc/passwd", "Europe/Amsterdam\n"):
        response = client.post(reverse("preferences"), {"time_zone": bad})
        assert response.status_code == 200, bad
        assert "is not a time zone this server knows. Choose one from the list." in (
            response.content.decode()
        )
        people.user.refresh_from_db()
        assert people.user.time_zone == "Asia/Tokyo"


def test_the_preferences_form_changes_only_the_requesters_own_zone(client, people):
    assert client.login(username=people.outsider.email, password=PASSWORD)
    client.post(
        reverse("preferences"),
        {
            "time_zone": "America/Chicago",
            "id": people.user.pk,
            "email": people.user.email,
            "is_superuser": "on",
        },
    )
    people.outsider.refresh_from_db()
    people.user.refresh_from_db()
    assert people.outsider.time_zone == "America/Chicago" and not people.outsider.is_superuser
    assert people.outsider.email == "zoe@other.example"
    assert people.user.time_zone == ""


def test_a_zone_that_tzdata_dropped_falls_back_to_the_instances(people, settings):
    settings.TIME_ZONE = "UTC"
    Account.objects.filter(pk=people.user.pk).update(time_zone="Gone/Away")
    sent_at(people.user, WINTER_NOON)
    client = Client()
    client.force_login(people.user)
    assert "2026-01-15 12:00 UTC" in client.get(reverse("sent_list")).content.decode()


def test_the_preferences_page_wants_a_signed_in_person(client, db):
    response = client.get(reverse("preferences"))
    assert response.status_code == 302 and response["Location"].startswith("/login/")
