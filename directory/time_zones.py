"""Each person's own time zone: the zones on offer, and the middleware that shows times in it.

The console formats every moment in the active time zone (config.timeformat's ``when``). Django
activates none by itself, so without a choice of their own people see the instance's zone
(SENDGATE_TIME_ZONE); with one, every page they load is in theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

# Not places a person lives in: the host's own setting and tzdata's placeholder.
NOT_ON_OFFER = frozenset({"localtime", "Factory"})


@lru_cache(maxsize=1)
def zone_names() -> tuple[str, ...]:
    """Every IANA zone this server knows, sorted (read from disk once: it walks tzdata)."""
    return tuple(sorted(available_timezones() - NOT_ON_OFFER))


@lru_cache(maxsize=64)
def zone_named(name: str) -> ZoneInfo | None:
    """The zone of that name, or None for "" and for a name tzdata no longer has."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def zone_of(account: object) -> ZoneInfo | None:
    """The person's own zone, None for the instance's (also for anonymous visitors)."""
    return zone_named(getattr(account, "time_zone", "") or "")


class UserTimeZoneMiddleware:
    """Show each signed-in person's times in their zone, everyone else's in the instance's.

    ``override`` also deactivates when the person has no zone: the active zone lives in the
    worker thread, and must not carry over from the previous request it served.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with timezone.override(zone_of(request.user)):
            return self.get_response(request)
