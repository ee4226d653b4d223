"""CSV import: a preview that changes nothing and names every bad row; then all rows or none."""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from directory.account_import import check_csv
from directory.models import Account, AccountImport, AuditEvent, OrgUnit
from outbox.models import Message
from outbox.onboarding import import_accounts, send_import_invitations

from .conftest import PASSWORD, wait_for


@pytest.fixture
def admin_client(client, people):
    assert client.login(username=people.admin.email, password=PASSWORD)
    return client


@pytest.fixture
def emea(people):
    sales = OrgUnit.objects.create(
        domain=people.domain, parent=people.domain.root_unit, name="Sales"
    )
    return OrgUnit.objects.create(domain=people.domain, parent=sales, name="EMEA")


def upload(client, people, content: bytes, invite: bool = True):
    data = {"file": SimpleUploadedFile("people.csv", content, content_type="text/csv")}
    if invite:
        data["invite"] = "on"
    return client.post(reverse("account_import", args=[people.domain.pk]), data, follow=True)


GOOD = (
    "address,name,OU path\r\n"
    "bob@example.com,Bob Builder,Sales/EMEA\r\n"
    'carol@example.com,"Carol, Jr.",\r\n'
)


def test_preview_changes_nothing_and_apply_imports_every_row(admin_client, people, emea):
    before = Account.objects.count()
    page = upload(admin_client, people, ("\ufeff" + GOOD).encode()).content.decode()  # with BOM
    assert "2 accounts are ready to import" in page
    assert "bob@example.com" in page and "example.com/Sales/EMEA" in page
    assert Account.objects.count() == before and not Message.objects.exists()

    ticket = re.search(r'name="upload" value="([^"]+)"', page).group(1)
    response = admin_client.post(
        reverse("account_import", args=[people.domain.pk]), {"upload": ticket}, follow=True
    )
    page = response.content.decode()
    assert "2 accounts imported." in page and "sending: 0 of 2" in page
    bob = Account.objects.get(email="bob@example.com")
    assert bob.org_unit == emea and bob.display_name == "Bob Builder"
    carol = Account.objects.get(email="carol@example.com")
    assert carol.display_name == "Carol, Jr." and carol.org_unit == people.domain.root_unit

    # The invitations go out in the background (here: the worker's function, called directly).
    job = AccountImport.objects.get()
    send_import_invitations(job.pk)
    progress = admin_client.get(reverse("account_import_progress", args=[people.domain.pk]))
    assert "2 sent" in progress.content.decode() and "hx-get" not in progress.content.decode()
    assert Message.objects.filter(recipients=["bob@example.com"]).count() == 1
    event = AuditEvent.objects.get(action="accounts_imported")
    assert event.detail == "2 accounts" and event.actor == people.admin

    # The same preview cannot be applied twice.
    again = admin_client.post(
        reverse("account_import", args=[people.domain.pk]), {"upload": ticket}, follow=True
    )
    assert "upload the file again" in again.content.decode()
    assert Account.objects.filter(email="bob@example.com").count() == 1


def test_every_bad_row_is_reported_by_line_and_nothing_is_imported(admin_client, people, emea):
    content = (
        "bob@example.com,Bob,Sales/EMEA\n"  # 1: fine
        "BOB@example.com,Bob again,\n"  # 2: case-variant duplicate within the file
        "ANN@example.com,Ann,\n"  # 3: has an account already
        "dave@elsewhere.org,Dave,\n"  # 4: outside the domain
        "erin@example.com,Erin,Sales/APAC\n"  # 5: no such OU
        "frank@example.com;Frank;Sales\n"  # 6: semicolons
        "not-an-address,Gina,\n"  # 7
        "a@example.com,b,c,d\n"  # 8: too many fields
    )
    page = upload(admin_client, people, content.encode()).content.decode()
    assert "7 problems: nothing was imported" in page
    expected = [
        (2, "BOB@example.com appears twice: also on line 1."),
        (3, "ANN@example.com already has an account."),
        (4, "dave@elsewhere.org is not in example.com."),
        (5, "example.com has no OU Sales/APAC."),
        (6, "Fields are separated by semicolons"),
        (7, "not-an-address is not a valid address"),
        (8, "4 fields; expected at most 3"),
    ]
    plan = check_csv(people.domain, content.encode())
    assert [
        (line, message[: len(text)])
        for (line, message), (_l, text) in zip(plan.errors, expected, strict=True)
    ] == expected
    for line, text in expected:
        assert f"<td>{line}</td><td>{text}" in page.replace("&#x27;", "'")
    assert not Account.objects.filter(email__in=["bob@example.com", "dave@elsewhere.org"]).exists()
    assert 'name="upload"' not in page


def test_one_bad_row_among_ten_thousand_stops_the_whole_file(people, emea):
    rows = [f"user{i:05d}@example.com,User {i},Sales/EMEA" for i in range(10_000)]
    rows[7_345] = "user07345@example.com,User,Sales/Nowhere"
    path_content = ("\n".join(rows) + "\n").encode()
    plan = check_csv(people.domain, path_content)
    assert plan.errors == [(7_346, "example.com has no OU Sales/Nowhere.")]
    assert len(plan.rows) == 9_999


def test_file_level_errors(people):
    assert check_csv(people.domain, b"x" * (10 * 1024 * 1024 + 1)).errors == [
        (0, "The file is larger than 10 MB: split it into smaller files.")
    ]
    latin1 = "bob@example.com,Bob\nzoë@example.com,Zoë\n".encode("latin-1")
    assert check_csv(people.domain, latin1).errors == [
        (2, "Line 2 is not UTF-8 text: save the file as “CSV UTF-8”.")
    ]
    assert check_csv(people.domain, b"\n\n").errors == [(0, "The file has no rows to import.")]
    too_many = "".join(f"u{i}@example.com\n" for i in range(50_001)).encode()
    assert check_csv(people.domain, too_many).errors[-1] == (
        50_001,
        "More than 50000 rows: split the file.",
    )


def test_import_command_dry_run_then_apply(people, emea, tmp_path):
    path = tmp_path / "people.csv"
    path.write_text(GOOD, encoding="utf-8-sig")
    out = io.StringIO()
    call_command("account", "import", "example.com", str(path), "--dry-run", stdout=out)
    assert "2 accounts would be created; nothing changed." in out.getvalue()
    assert not Account.objects.filter(email="bob@example.com").exists()

    call_command("account", "import", "example.com", str(path), "--no-invite", stdout=out)
    assert Account.objects.filter(email__in=["bob@example.com", "carol@example.com"]).count() == 2
    assert not Message.objects.exists()

    err = io.StringIO()
    with pytest.raises(CommandError, match="2 errors; nothing was imported."):
        call_command("account", "import", "example.com", str(path), stderr=err)
    assert "line 2: bob@example.com already has an account." in err.getvalue()


def test_invitations_go_out_in_batches_and_never_twice(people, emea):
    rows = "".join(f"user{i:03d}@example.com,User {i},Sales/EMEA\n" for i in range(7))
    job = import_accounts(check_csv(people.domain, rows.encode(), "x.csv"), people.admin)
    Account.objects.filter(email="user003@example.com").update(is_active=False)
    send_import_invitations(job.pk, batch_size=3)
    send_import_invitations(job.pk, batch_size=3)  # a duplicate run: nothing more
    job.refresh_from_db()
    assert job.finished_at is not None and job.invited == 6
    invited = sorted(r for m in Message.objects.all() for r in m.recipients)
    assert invited == [f"user{i:03d}@example.com" for i in range(7) if i != 3]


@pytest.mark.worker
def test_a_real_worker_sends_the_invitations_of_an_import(people, emea, worker_factory):
    worker_factory()
    rows = "".join(f"user{i:03d}@example.com,User {i},\n" for i in range(25))
    job = import_accounts(check_csv(people.domain, rows.encode(), "x.csv"), people.admin)
    wait_for(
        lambda: AccountImport.objects.filter(pk=job.pk, finished_at__isnull=False).exists(),
        what="the invitations of the import",
    )
    assert Message.objects.filter(kind=Message.Kind.REPORT).count() == 25


def test_checked_files_that_were_never_imported_are_removed_after_an_hour(
    admin_client, people, emea, settings
):
    folder = Path(settings.VAR_DIR) / "imports"
    before = set(folder.iterdir()) if folder.exists() else set()
    upload(admin_client, people, GOOD.encode())
    [stale] = set(folder.iterdir()) - before
    os.utime(stale, (time.time() - 3700, time.time() - 3700))
    upload(admin_client, people, GOOD.encode())
    remaining = set(folder.iterdir())
    assert stale not in remaining and len(remaining - before) == 1
