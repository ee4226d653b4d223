"""The console in Dutch: pages follow the browser or the switcher, and the catalog is complete."""

from __future__ import annotations

import ast
import gettext
import re

from django.conf import settings
from django.urls import reverse

from .conftest import PASSWORD, ROOT

CATALOG = ROOT / "locale" / "nl" / "LC_MESSAGES"


def test_login_and_send_as_pages_render_in_dutch_for_a_dutch_browser(client, people):
    login = client.get(reverse("login"), headers={"accept-language": "nl"}).content.decode()
    assert '<html lang="nl">' in login
    assert "Inloggen bij Sendgate" in login and "Wachtwoord" in login

    client.login(username=people.user.email, password=PASSWORD)
    page = client.get(reverse("alias_list"), headers={"accept-language": "nl"}).content.decode()
    assert "E-mail verzenden als" in page and "Nog een adres toevoegen" in page
    assert "kun je e-mail verzenden als adressen die je elders hebt" in page
    assert "Add another address" not in page


def test_the_switcher_sets_the_language_for_the_following_requests(client, people):
    english = client.get(reverse("login")).content.decode()
    assert "Log in to Sendgate" in english and 'action="/i18n/setlang/"' in english

    response = client.post(reverse("set_language"), {"language": "nl", "next": reverse("login")})
    assert response.status_code == 302 and response.headers["Location"] == reverse("login")
    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "nl"
    assert "Inloggen bij Sendgate" in client.get(reverse("login")).content.decode()

    client.post(reverse("set_language"), {"language": "en"})
    assert "Log in to Sendgate" in client.get(reverse("login")).content.decode()


def po_entries(path) -> list[dict]:
    """msgctxt/msgid/msgid_plural/msgstr[n] and flags of each live entry (obsolete #~ skipped)."""
    entries, entry, key = [], None, None
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            if entry and "msgid" in entry:
                entries.append(entry)
            entry, key = None, None
            continue
        entry = entry if entry is not None else {"flags": set()}
        if line.startswith("#,"):
            entry["flags"].update(flag.strip() for flag in line[2:].split(","))
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            entry[key] += ast.literal_eval(line)
        else:
            key, _, value = line.partition(" ")
            key = re.sub(r"msgstr\[(\d+)\]", r"msgstr\1", key)
            entry[key] = ast.literal_eval(value)
    return [entry for entry in entries if entry["msgid"]]  # the header has an empty msgid


def test_every_string_is_translated_and_the_compiled_catalog_matches_the_po():
    entries = po_entries(CATALOG / "django.po")
    assert len(entries) > 300
    untranslated = [
        entry["msgid"]
        for entry in entries
        if "fuzzy" in entry["flags"]
        or not all(value for key, value in entry.items() if key.startswith("msgstr"))
    ]
    assert not untranslated, "untranslated or fuzzy in django.po (translate, then compilemessages)"

    with (CATALOG / "django.mo").open("rb") as mo:
        compiled = gettext.GNUTranslations(mo)
    expected = {}
    for entry in entries:
        msgid = f"{entry['msgctxt']}\x04{entry['msgid']}" if "msgctxt" in entry else entry["msgid"]
        if "msgid_plural" in entry:
            expected |= {(msgid, 0): entry["msgstr0"], (msgid, 1): entry["msgstr1"]}
        else:
            expected[msgid] = entry["msgstr"]
    actual = {key: value for key, value in compiled._catalog.items() if key != ""}
    assert actual == expected, "django.mo is stale: run compilemessages -l nl and commit the .mo"
