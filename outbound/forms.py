from __future__ import annotations

from typing import cast

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from mailkit.addresses import normalize_address, reject_control_characters


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files in one field (Django's documented recipe)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None) -> list:
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(d, initial) for d in data]
        return [single(data, initial)] if data else []


class ComposeForm(forms.Form):
    from_address = forms.ChoiceField(label=_("From"))
    to = forms.CharField(label=_("To"), help_text=_("Separate several addresses with commas."))
    subject = forms.CharField(label=_("Subject"), max_length=998, required=False)
    body = forms.CharField(label=_("Message"), widget=forms.Textarea, required=False)
    attachments = MultipleFileField(label=_("Attachments"), required=False)

    def __init__(self, *args, addresses: list[tuple[str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["from_address"]).choices = [
            (address, f"{name} <{address}>" if name else address) for address, name in addresses
        ]

    def clean_to(self) -> list[str]:
        addresses = []
        for given in (a.strip() for a in self.cleaned_data["to"].split(",")):
            if not given:
                continue
            try:
                addresses.append(normalize_address(given))
            except forms.ValidationError as error:
                raise forms.ValidationError(
                    _("“%(address)s”: %(problem)s")
                    % {"address": given, "problem": error.messages[0]}
                ) from error
        return addresses

    def clean_subject(self) -> str:
        return reject_control_characters(self.cleaned_data["subject"])

    def clean_attachments(self) -> list:
        files = self.cleaned_data["attachments"]
        limit = settings.SENDGATE_SUBMISSION_MAX_MESSAGE_BYTES
        # Base64 makes attachments a third bigger in the message.
        if sum(f.size for f in files) * 4 // 3 > limit:
            raise forms.ValidationError(
                _("The attachments are too big: at most %(mb)s MB in all.")
                % {"mb": f"{limit * 3 / 4 / 1024 / 1024:.1f}"}
            )
        return files


class AppPasswordForm(forms.Form):
    name = forms.CharField(
        label=_("Name"),
        max_length=100,
        help_text=_("Where you will use it, e.g. “Laptop Thunderbird”. Only you see this name."),
    )

    def clean_name(self) -> str:
        return reject_control_characters(self.cleaned_data["name"].strip())
