"""The person's own preferences: the time zone the console shows their times in."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .access import AuthenticatedRequest
from .models import Account
from .time_zones import zone_names


def _zone_choices() -> list[tuple[str, str]]:
    instance_zone = _("The instance's (%(zone)s)") % {"zone": settings.TIME_ZONE}
    return [("", instance_zone)] + [(name, name) for name in zone_names()]


class PreferencesForm(forms.ModelForm):
    time_zone = forms.ChoiceField(
        label=gettext_lazy("Time zone"),
        choices=_zone_choices,  # called for each form: in the language of its request
        required=False,
        help_text=gettext_lazy("Every date and time in the console is shown in this zone."),
        error_messages={
            "invalid_choice": gettext_lazy(
                "%(value)s is not a time zone this server knows. Choose one from the list."
            )
        },
    )

    class Meta:
        model = Account
        fields = ["time_zone"]


@login_required
def preferences(request: AuthenticatedRequest) -> HttpResponse:
    form = PreferencesForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        account = form.save(commit=False)
        # Only this column: the rest of the row (the policy value propagation writes, the last
        # login) may have changed since this request read it.
        account.save(update_fields=["time_zone"])
        if account.time_zone:
            messages.success(
                request, _("Times are now shown in %(zone)s.") % {"zone": account.time_zone}
            )
        else:
            messages.success(
                request,
                _("Times are now shown in the instance's time zone, %(zone)s.")
                % {"zone": settings.TIME_ZONE},
            )
        return redirect("preferences")
    return render(request, "directory/preferences.html", {"form": form, "now": timezone.now()})
