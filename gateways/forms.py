from __future__ import annotations

from typing import cast

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from directory.models import Account, Domain
from mailkit.addresses import domain_of, normalize_address, reject_control_characters

from .models import SendAsAlias, SmtpServer

SMTP_FIELDS = ("smtp_host", "smtp_port", "smtp_security", "smtp_username", "smtp_password")


class SmtpServerForm(forms.Form):
    """The SMTP server of an alias, for adding and editing. The password is write-only."""

    smtp_host = forms.CharField(
        label=_("SMTP server"),
        max_length=253,
        required=False,
        help_text=_("Leave empty to send through your organisation's servers."),
    )
    smtp_port = forms.IntegerField(
        label=_("Port"),
        min_value=1,
        max_value=65535,
        initial=587,
        required=False,
        error_messages={
            "min_value": _("Enter a port from 1 to 65535, usually 587 or 465."),
            "max_value": _("Enter a port from 1 to 65535, usually 587 or 465."),
        },
    )
    smtp_security = forms.ChoiceField(label=_("Security"), required=False)
    smtp_username = forms.CharField(label=_("Username"), max_length=320, required=False)
    smtp_password = forms.CharField(
        label=_("Password"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
    )

    def __init__(self, *args, instance: SmtpServer | None = None, **kwargs) -> None:
        self.instance = instance
        if instance is not None:
            kwargs.setdefault(
                "initial",
                {
                    "smtp_host": instance.host,
                    "smtp_port": instance.port,
                    "smtp_security": instance.security,
                    "smtp_username": instance.username,
                },
            )
        super().__init__(*args, **kwargs)
        choices = [
            (SmtpServer.Security.STARTTLS.value, SmtpServer.Security.STARTTLS.label),
            (SmtpServer.Security.TLS.value, SmtpServer.Security.TLS.label),
        ]
        if settings.SENDGATE_SMTP_ALLOW_PLAINTEXT:
            choices.append((SmtpServer.Security.NONE.value, SmtpServer.Security.NONE.label))
        cast(forms.ChoiceField, self.fields["smtp_security"]).choices = choices
        self.fields["smtp_security"].initial = SmtpServer.Security.STARTTLS
        if instance is not None and instance.uses_oauth:
            self.fields["smtp_password"].help_text = _(
                "Leave empty to keep the sign-in with %(provider)s; a password entered here "
                "replaces it."
            ) % {"provider": instance.oauth_provider_name}
        elif instance is not None:
            self.fields["smtp_password"].help_text = _(
                "Leave empty to keep the saved password. Changing the server or the username "
                "needs the password again."
            )

    def clean_smtp_host(self) -> str:
        host = reject_control_characters(self.cleaned_data["smtp_host"].strip().rstrip("."))
        return host.removeprefix("[").removesuffix("]").lower()

    def clean_smtp_username(self) -> str:
        return reject_control_characters(self.cleaned_data["smtp_username"])

    def clean(self) -> dict:
        super().clean()
        data = self.cleaned_data
        if not data.get("smtp_host"):
            return data
        self.check_port_and_security(data)
        if not data.get("smtp_username"):
            self.add_error("smtp_username", _("Enter the username for this server."))
        if not data.get("smtp_password"):
            old = self.instance
            if old is None or (old.host, old.username) != (
                data["smtp_host"],
                data.get("smtp_username"),
            ):
                self.add_error("smtp_password", _("Enter the password for this server."))
        return data

    def check_port_and_security(self, data: dict) -> None:
        port = data.get("smtp_port")
        if not port and "smtp_port" not in self.errors:  # an invalid port has its own error
            self.add_error("smtp_port", _("Enter the server's port, usually 587 or 465."))
        if data.get("smtp_security") == SmtpServer.Security.NONE and port != 25:
            self.add_error(
                "smtp_security", _("A connection without TLS is only allowed on port 25.")
            )

    def server(self) -> SmtpServer | None:
        """The server as it would be saved (not saved yet), or None when the host is empty."""
        data = self.cleaned_data
        if not data.get("smtp_host"):
            return None
        server = self.instance or SmtpServer()
        server.host = data["smtp_host"]
        server.port = data["smtp_port"]
        server.security = data["smtp_security"] or SmtpServer.Security.STARTTLS
        server.username = data["smtp_username"]
        if data["smtp_password"]:
            server.password = data["smtp_password"]
            server.oauth_provider = ""  # a password replaces a sign-in
            server.oauth_refresh_token = server.oauth_access_token = ""
        return server


class AliasForm(forms.Form):
    display_name = forms.CharField(label=_("Name"), max_length=200, required=False)
    address = forms.CharField(label=_("E-mail address"), max_length=254)
    reply_to = forms.CharField(
        label=_("Reply-to address"),
        max_length=254,
        required=False,
        help_text=_("Optional: where replies should go instead."),
    )
    treat_as_alias = forms.BooleanField(
        label=_("Treat as an alias"),
        required=False,
        initial=True,
        help_text=_("Mail to this address is yours too: replies to it come from it."),
    )

    def __init__(self, *args, account: Account, alias: SendAsAlias | None = None, **kwargs):
        self.account = account
        self.instance = alias
        if alias is not None:
            kwargs.setdefault(
                "initial",
                {
                    "display_name": alias.display_name,
                    "address": alias.address,
                    "reply_to": alias.reply_to,
                    "treat_as_alias": alias.treat_as_alias,
                },
            )
        super().__init__(*args, **kwargs)
        if alias is not None:
            self.fields["address"].disabled = True  # a new address is a new alias to prove

    def clean_display_name(self) -> str:
        return reject_control_characters(self.cleaned_data["display_name"].strip())

    def clean_address(self) -> str:
        address = normalize_address(self.cleaned_data["address"])
        if self.instance is not None:
            return address
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

    def clean(self) -> dict:
        super().clean()
        data = self.cleaned_data
        domain = self.account.domain
        if self.instance is None and domain is not None and not domain.is_verified:
            # Nothing could be sent as it (nor its confirmation code be used) until then.
            raise ValidationError(
                _(
                    "%(domain)s has not proved it owns its domain name yet, so it cannot send; "
                    "its administrator must publish the verification DNS record first."
                )
                % {"domain": domain.name}
            )
        if not self.account.gateways_allowed and any(self.data.get(f) for f in SMTP_FIELDS):
            raise ValidationError(
                _(
                    "Your administrator does not allow per-user outbound gateways, so this alias "
                    "cannot have its own SMTP server."
                )
            )
        return data

    def alias(self) -> SendAsAlias:
        data = self.cleaned_data
        alias = self.instance or SendAsAlias(account=self.account, address=data["address"])
        alias.display_name = data["display_name"]
        alias.reply_to = data["reply_to"]
        alias.treat_as_alias = data["treat_as_alias"]
        return alias


class ConfirmAliasForm(forms.Form):
    code = forms.CharField(label=_("Confirmation code"), max_length=12)


class DomainGatewayForm(SmtpServerForm):
    """The domain's outbound gateway, or direct delivery. Username and password are optional:
    many smarthosts accept the organisation's servers by address instead."""

    DIRECT, GATEWAY = "direct", "gateway"
    mode = forms.ChoiceField(
        label=_("Outbound mail"),
        widget=forms.RadioSelect,
        choices=[
            ("direct", _("Send directly to the recipients' mail servers (MX)")),
            ("gateway", _("Send through this gateway (smarthost)")),
        ],
    )
    field_order = ["mode", *SMTP_FIELDS]

    def __init__(self, *args, instance: SmtpServer | None = None, **kwargs) -> None:
        super().__init__(*args, instance=instance, **kwargs)
        self.fields["mode"].initial = self.GATEWAY if instance is not None else self.DIRECT
        self.fields["smtp_host"].help_text = _("The gateway's host name or IP address.")
        if instance is not None:
            self.fields["smtp_password"].help_text = _(
                "Leave empty to keep the saved password. Changing the host or the username "
                "needs the password again."
            )

    def clean(self) -> dict:
        forms.Form.clean(self)
        data = self.cleaned_data
        if data.get("mode") != self.GATEWAY:
            return data
        if not data.get("smtp_host"):
            self.add_error("smtp_host", _("Enter the gateway's host name."))
            return data
        self.check_port_and_security(data)
        if data.get("smtp_password") and not data.get("smtp_username"):
            self.add_error("smtp_username", _("Enter the username that goes with the password."))
        old = self.instance
        keeps_password = old is not None and (old.host, old.username) == (
            data["smtp_host"],
            data.get("smtp_username"),
        )
        if data.get("smtp_username") and not data.get("smtp_password") and not keeps_password:
            self.add_error("smtp_password", _("Enter the password for this server."))
        return data

    def server(self) -> SmtpServer | None:
        data = self.cleaned_data
        if data.get("mode") != self.GATEWAY:
            return None
        server = super().server()  # clean() required the host in gateway mode
        if server is not None and not data["smtp_username"]:
            server.password = ""  # no login: no stored password either
        return server
