from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from .models import DkimKey


class GenerateKeyForm(forms.Form):
    algorithm = forms.ChoiceField(
        label=_("Algorithm"),
        choices=DkimKey.Algorithm.choices,
        initial=DkimKey.Algorithm.RSA,
        help_text=_(
            "RSA 2048 is checked by every receiver. Ed25519 is shorter but not yet checked "
            "everywhere: add it beside an RSA key, not instead of one."
        ),
    )
