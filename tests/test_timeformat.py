"""One date format in the console, with the time zone named (the instance's SENDGATE_TIME_ZONE)."""

from __future__ import annotations

from datetime import UTC, datetime

from django.template import Context, Template
from django.urls import reverse
from django.utils import timezone

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
