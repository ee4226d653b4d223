"""POST/redirect/GET: a successful POST answers with a redirect, so reloading the page it lands on
does not do it again (new recovery codes, another upload of a file, another saved setting)."""

from __future__ import annotations

import re
from pathlib import Path

import pyotp
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from signin import twostep

from .conftest import PASSWORD
from .test_signin import enrol

CSV = b"address,name,OU path\r\nbob@example.com,Bob Builder,\r\n"


@pytest.fixture
def ann(client, people) -> Client:
    assert client.login(username=people.user.email, password=PASSWORD)
    return client


def redirected(response, to: str) -> str:
    assert response.status_code in (302, 303), response.status_code
    assert response["Location"].split("?")[0] == to
    return response["Location"]


def test_new_recovery_codes_are_made_by_the_post_and_shown_by_the_get_once(ann, people):
    enrol(people.user)
    twostep.new_recovery_codes(people.user)
    old = set(people.user.staticdevice_set.get().token_set.values_list("token", flat=True))

    page = redirected(ann.post(reverse("recovery_codes")), reverse("recovery_codes"))

    shown = ann.get(page)
    assert "no-store" in shown["Cache-Control"]
    assert "New recovery codes made; the old ones no longer work." in shown.content.decode()
    codes = shown.context["codes"]
    assert len(codes) == 10 and not {code.replace("-", "") for code in codes} & old
    redirected(ann.get(page), reverse("security"))  # a reload: no codes, and no new ones
    tokens = people.user.staticdevice_set.get().token_set.values_list("token", flat=True)
    assert set(tokens) == {code.replace("-", "") for code in codes}


def test_confirming_the_authenticator_redirects_to_the_codes(ann, people):
    ann.post(reverse("two_step_start"))
    secret = ann.get(reverse("two_step_setup")).context["secret"].replace(" ", "")

    response = ann.post(reverse("two_step_setup"), {"code": pyotp.TOTP(secret).now()})

    redirected(response, reverse("recovery_codes"))
    assert len(ann.get(response["Location"]).context["codes"]) == 10


def test_a_checked_file_redirects_to_its_preview_which_a_reload_shows_again(
    client, people, settings
):
    assert client.login(username=people.admin.email, password=PASSWORD)
    url = reverse("account_import", args=[people.domain.pk])
    folder = Path(settings.VAR_DIR) / "imports"
    before = set(folder.iterdir()) if folder.exists() else set()

    response = client.post(url, {"file": SimpleUploadedFile("people.csv", CSV), "invite": "on"})

    preview = redirected(response, url)
    kept = set(folder.iterdir()) - before
    for _reload in range(2):
        page = client.get(preview).content.decode()
        assert "1 account is ready to import" in page and "bob@example.com" in page
    assert set(folder.iterdir()) - before == kept  # the reloads sent nothing again

    # Another admin of the domain cannot use this admin's preview.
    people.domain.admins.add(people.user)
    other = Client()
    other.force_login(people.user)
    page = other.get(preview, follow=True).content.decode()
    assert "That preview has expired; upload the file again." in page
    assert "ready to import" not in page

    ticket = re.search(r'name="upload" value="([^"]+)"', client.get(preview).content.decode())
    applied = client.post(url, {"upload": ticket.group(1)})
    redirected(applied, url)
    assert people.domain.accounts.filter(email="bob@example.com").exists()


def test_saving_the_time_zone_redirects(ann):
    response = ann.post(reverse("preferences"), {"time_zone": "Asia/Tokyo"})
    redirected(response, reverse("preferences"))
