from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from .addresses import domain_of, normalize_address, reject_control_characters
from .models import Account, Domain, SendAsAlias, SmtpServer

SMTP_FIELDS = ("smtp_host", "smtp_port", "smtp_security", "smtp_username", "smtp_password")


class AliasForm(forms.Form):
    display_name = forms.CharField(label=_("Name"), max_length=200, required=False)
    address = forms.CharField(label=_("E-mail address"), max_length=254)
    reply_to = forms.CharField(
        label=_("Reply-to address"),
        max_length=254,
        required=False,
        help_text=_("Optional: where replies should go instead."),
    )
    treat_as_alias = forms.BooleanField(label=_("Treat as an alias"), required=False, initial=True)
    smtp_host = forms.CharField(
        label=_("SMTP server"),
        max_length=253,
        required=False,
        help_text=_("Leave empty to send through your organisation's servers."),
    )
    smtp_port = forms.IntegerField(
        label=_("Port"), min_value=1, max_value=65535, initial=587, required=False
    )
    smtp_security = forms.ChoiceField(
        label=_("Security"),
        choices=[c for c in SmtpServer.Security.choices if c[0] != SmtpServer.Security.NONE],
        initial=SmtpServer.Security.STARTTLS,
        required=False,
    )
    smtp_username = forms.CharField(label=_("Username"), max_length=320, required=False)
    smtp_password = forms.CharField(
        label=_("Password"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
    )

    def __init__(self, *args, account: Account, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.account = account
        if not account.gateways_allowed:
            for name in SMTP_FIELDS:
                del self.fields[name]

    def clean_display_name(self) -> str:
        return reject_control_characters(self.cleaned_data["display_name"].strip())

    def clean_address(self) -> str:
        address = normalize_address(self.cleaned_data["address"])
        if address == self.account.email:
            raise ValidationError(_("This is already your primary address."))
        if Domain.objects.filter(name=domain_of(address)).exists():
            raise ValidationError(
                _("Addresses in domains hosted here are managed by your administrator.")
            )
        if self.account.aliases.filter(address=address).exists():
            raise ValidationError(_("You already have this address."))
        return address

    def clean_reply_to(self) -> str:
        value = self.cleaned_data["reply_to"].strip()
        return normalize_address(value) if value else ""

    def clean_smtp_host(self) -> str:
        return reject_control_characters(self.cleaned_data["smtp_host"].strip().rstrip("."))

    def clean_smtp_username(self) -> str:
        return reject_control_characters(self.cleaned_data["smtp_username"])

    def clean(self) -> dict:
        data = super().clean()
        if not self.account.gateways_allowed and any(self.data.get(f) for f in SMTP_FIELDS):
            raise ValidationError(
                _(
                    "Your administrator does not allow per-user outbound gateways, so this alias "
                    "cannot have its own SMTP server."
                )
            )
        if data.get("smtp_host"):
            if not data.get("smtp_port"):
                self.add_error("smtp_port", _("Enter the server's port, usually 587 or 465."))
            if not data.get("smtp_username") or not data.get("smtp_password"):
                self.add_error(
                    "smtp_password", _("Enter the username and password for this server.")
                )
        return data

    def smtp_server(self) -> SmtpServer | None:
        data = self.cleaned_data
        if not data.get("smtp_host"):
            return None
        return SmtpServer(
            host=data["smtp_host"],
            port=data["smtp_port"],
            security=data["smtp_security"] or SmtpServer.Security.STARTTLS,
            username=data["smtp_username"],
            password=data["smtp_password"],
        )

    def alias(self) -> SendAsAlias:
        data = self.cleaned_data
        return SendAsAlias(
            account=self.account,
            display_name=data["display_name"],
            address=data["address"],
            reply_to=data["reply_to"],
            treat_as_alias=data["treat_as_alias"],
        )


class ConfirmAliasForm(forms.Form):
    code = forms.CharField(label=_("Confirmation code"), max_length=12)
