from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext_lazy as _


def navigation(request: HttpRequest) -> dict:
    """Left navigation by area: admin pages for domain admins, personal pages for everyone."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_sections": []}
    sections = []
    if user.is_superuser:
        sections.append((_("Operator"), [(_("All domains"), reverse("operator_domains"))]))
    if user.is_domain_admin:
        sections.append((_("Administration"), [(_("Domains and policy"), reverse("domain_list"))]))
    sections.append(
        (
            _("My mail"),
            [
                (_("Send mail as"), reverse("alias_list")),
                (_("Compose"), reverse("compose")),
                (_("Sent mail"), reverse("sent_list")),
                (_("App passwords"), reverse("app_password_list")),
            ],
        )
    )
    sections.append(
        (
            _("Account"),
            [
                (_("Sign-in and security"), reverse("security")),
                (_("Change my password"), reverse("password_change")),
                (_("Preferences"), reverse("preferences")),
            ],
        )
    )
    return {"nav_sections": _mark_current(sections, request.path)}


def _mark_current(sections: list, path: str) -> list:
    """(label, url) → (label, url, is_current): the link whose URL is the longest prefix of the
    path, so sub-pages (a message under Sent mail, an OU under Domains) keep their area lit."""
    urls = [url for _title, links in sections for _label, url in links]
    matching = [url for url in urls if path.startswith(url)]
    current = max(matching, key=len) if matching else None
    return [
        (title, [(label, url, url == current) for label, url in links]) for title, links in sections
    ]
