from typing import cast

from django import forms
from django.utils.translation import gettext_lazy as _

from directory.forms import unit_field


class DomainPolicyForm(forms.Form):
    allow_user_gateways = forms.TypedChoiceField(
        label=_("Allow per-user outbound gateways"),
        choices=[
            ("0", _("Not allowed: all mail leaves through the domain's path")),
            ("1", _("Allowed: users may send an alias's mail through that address's own server")),
        ],
        coerce=lambda v: v == "1",
        widget=forms.RadioSelect,
        help_text=_(
            "Mail sent through a user's own server bypasses this domain's outbound "
            "gateway (compliance, archiving)."
        ),
    )


class UnitPolicyForm(forms.Form):
    """The setting of one OU below the root: inherit from its parent, or its own allow/deny."""

    setting = forms.ChoiceField(
        label=_("Per-user outbound gateways"),
        choices=[
            ("inherit", _("Inherit from the parent OU")),
            ("allow", _("Allowed")),
            ("deny", _("Not allowed")),
        ],
    )


class AuditFilterForm(forms.Form):
    actor = forms.TypedChoiceField(label=_("Admin"), required=False, coerce=int, empty_value=None)

    def __init__(self, *args, domain_id: int, actor_choices, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Empty: every OU.
        self.fields["unit"] = unit_field(_("OU"), domain_id, required=False)
        cast(forms.ChoiceField, self.fields["actor"]).choices = [
            ("", _("Every admin")),
            *actor_choices,
        ]
        self.order_fields(["unit", "actor"])
