"""Forms of the OU pages: every choice narrowed to the admin's domain."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from django import forms
from django.core.exceptions import ValidationError
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from mailkit.addresses import normalize_address, reject_control_characters

from .accounts import DirectoryError, clean_display_name, new_address
from .models import Account, Domain, OrgUnit

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise


class UnitPicker(forms.Widget):
    """A search box for an OU by its path: the matches come from the server as radio buttons.

    A ``<select>`` of every OU weighs a megabyte at a thousand OUs on every page that has one;
    this renders only the chosen OU, and up to twenty matches as the admin types.
    """

    def __init__(self, domain_id: int, exclude_unit: int | None = None) -> None:
        super().__init__()
        self.domain_id = domain_id
        self.exclude_unit = exclude_unit

    def render(self, name, value, attrs=None, renderer=None) -> SafeString:
        attrs = self.build_attrs(self.attrs, attrs)
        selected = None
        if value not in (None, ""):
            pk = value.pk if isinstance(value, OrgUnit) else value
            if str(pk).isdigit():
                selected = (int(pk), OrgUnit.objects.paths(self.domain_id).get(int(pk)))
        widget = {
            "name": name,
            "attrs": attrs,
            "value": selected[0] if selected else "",
            "selected_path": selected[1] if selected else None,
            "search_url": reverse("unit_search", args=[self.domain_id]),
            "exclude": self.exclude_unit,
        }
        return render_to_string("directory/widgets/unit_picker.html", {"widget": widget})

    def value_from_datadict(self, data, files, name):
        return data.get(name)


def unit_field(
    label: StrOrPromise,
    domain_id: int,
    exclude: Collection[int] = frozenset(),
    *,
    exclude_unit=None,
    **kwargs,
) -> forms.ModelChoiceField:
    """One of the domain's OUs, picked by searching its path; ``exclude`` cannot be chosen.

    ``exclude_unit``: the OU whose subtree ``exclude`` is, so that the search leaves it out too.
    """
    return forms.ModelChoiceField(
        label=label,
        queryset=OrgUnit.objects.filter(domain_id=domain_id).exclude(pk__in=exclude),
        widget=UnitPicker(domain_id, exclude_unit),
        **kwargs,
    )


def _clean_name(name: str) -> str:
    name = reject_control_characters(name.strip())
    if "/" in name:
        raise ValidationError(_("An OU name cannot contain “/”: it separates OUs in a path."))
    if not name:
        raise ValidationError(_("Enter a name."))
    return name


def _check_sibling_name(parent: OrgUnit, name: str, exclude: OrgUnit | None = None) -> None:
    siblings = OrgUnit.objects.filter(parent=parent, name=name)
    if exclude is not None:
        siblings = siblings.exclude(pk=exclude.pk)
    if siblings.exists():
        raise ValidationError(
            _("%(parent)s already has an OU with this name.") % {"parent": parent}
        )


class UnitCreateForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)

    def __init__(self, *args, domain: Domain, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["parent"] = unit_field(_("Inside"), domain.pk)

    def clean_name(self) -> str:
        return _clean_name(self.cleaned_data["name"])

    def clean(self) -> dict:
        super().clean()
        data = self.cleaned_data
        if data.get("name") and data.get("parent"):
            try:
                _check_sibling_name(data["parent"], data["name"])
            except ValidationError as error:
                self.add_error("name", error)
        return data


class UnitRenameForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)

    def __init__(self, *args, unit: OrgUnit, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.unit = unit

    def clean_name(self) -> str:
        name = _clean_name(self.cleaned_data["name"])
        if self.unit.parent is not None:
            _check_sibling_name(self.unit.parent, name, exclude=self.unit)
        return name


class UnitMoveForm(forms.Form):
    def __init__(self, *args, unit: OrgUnit, excluded: set[int], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.unit = unit
        # The OU itself and its own sub-OUs are not offered: a move there would make a cycle.
        self.fields["parent"] = unit_field(
            _("Move into"), unit.domain_id, excluded, exclude_unit=unit.pk
        )

    def clean_parent(self) -> OrgUnit:
        parent = self.cleaned_data["parent"]
        _check_sibling_name(parent, self.unit.name)
        return parent


class AccountMoveForm(forms.Form):
    """Move one account, named by its address (a select of 100,000 accounts helps nobody)."""

    email = forms.CharField(label=_("Account address"), max_length=254)

    def __init__(self, *args, domain: Domain, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.domain = domain
        self.fields["unit"] = unit_field(_("Move to"), domain.pk)

    def clean_email(self) -> Account:
        address = normalize_address(self.cleaned_data["email"])
        account = Account.objects.filter(domain=self.domain, email=address).first()
        if account is None:
            raise ValidationError(
                _("No account %(address)s in %(domain)s.")
                % {"address": address, "domain": self.domain}
            )
        return account


class AccountAddForm(forms.Form):
    email = forms.CharField(label=_("Address"), max_length=254)
    display_name = forms.CharField(label=_("Name"), max_length=200, required=False)

    def __init__(self, *args, domain: Domain, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.domain = domain
        self.fields["unit"] = unit_field(_("Organisational unit"), domain.pk)
        self.fields["email"].help_text = _("An address in %(domain)s.") % {"domain": domain.name}

    def clean_email(self) -> str:
        try:
            return new_address(self.domain, self.cleaned_data["email"])
        except DirectoryError as exc:
            raise ValidationError(str(exc)) from None

    def clean_display_name(self) -> str:
        try:
            return clean_display_name(self.cleaned_data["display_name"])
        except DirectoryError as exc:
            raise ValidationError(str(exc)) from None


class AccountFilterForm(forms.Form):
    q = forms.CharField(label=_("Search"), required=False, max_length=254)
    state = forms.ChoiceField(
        label=_("State"),
        required=False,
        choices=[("", _("All")), ("active", _("Active")), ("inactive", _("Deactivated"))],
    )

    def __init__(self, *args, domain: Domain, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["unit"] = unit_field(
            _("OU"), domain.pk, required=False, empty_label=_("All OUs")
        )


class AccountImportForm(forms.Form):
    file = forms.FileField(
        label=_("CSV file"),
        help_text=_(
            "One account per line: address, name, OU path (e.g. Sales/EMEA; empty: the top OU). "
            "UTF-8, comma-separated, at most 50,000 rows and 10 MB."
        ),
    )
    invite = forms.BooleanField(
        label=_("Mail each new account an invitation"), required=False, initial=True
    )


class AccountUnitForm(forms.Form):
    def __init__(self, *args, domain: Domain, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["unit"] = unit_field(_("Move to"), domain.pk)
