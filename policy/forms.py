from django import forms
from django.utils.translation import gettext_lazy as _


class DomainPolicyForm(forms.Form):
    allow_user_gateways = forms.TypedChoiceField(
        label=_("Allow per-user outbound gateways"),
        choices=[
            ("0", _("Off: all mail leaves through the domain's path")),
            ("1", _("On: users may send an alias's mail through that address's own server")),
        ],
        coerce=lambda v: v == "1",
        widget=forms.RadioSelect,
        help_text=_(
            "Mail sent through a user's own server bypasses this domain's outbound "
            "gateway (compliance, archiving)."
        ),
    )
