"""One way to show a moment in the console: date, time and the time zone it is in.

Registered as a template builtin, so every template writes ``{{ value|when }}``. The zone is the
active one: the person's own (directory.time_zones activates it for each request), else the
instance's SENDGATE_TIME_ZONE; showing its abbreviation keeps "09:00" from meaning different
things to admins in different places.
"""

from __future__ import annotations

from datetime import datetime

from django import template
from django.template.defaultfilters import date as date_filter

register = template.Library()

# ISO-like order reads the same in English and Dutch and sorts as text.
WHEN_FORMAT = "Y-m-d H:i T"


@register.filter(expects_localtime=True, is_safe=False)
def when(value: datetime | None) -> str:
    """Format a datetime as "2026-11-30 06:15 UTC" in the active time zone; "" for None."""
    if value in (None, ""):
        return ""
    return date_filter(value, WHEN_FORMAT)
