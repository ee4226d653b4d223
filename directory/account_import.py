"""Check a CSV of new accounts (address, name, OU path) before anything is created.

The check reads the whole file and reports every bad row by its line number; the import itself
(``outbox/onboarding.import_accounts``) then creates all rows in one transaction, or none.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from django.utils.translation import gettext as _

from .accounts import DirectoryError, clean_display_name, new_address
from .models import Account, Domain, OrgUnit

MAX_BYTES = 10 * 1024 * 1024
MAX_ROWS = 50_000
HEADER_WORDS = {"address", "email", "e-mail", "adres"}


@dataclass(frozen=True)
class ImportRow:
    line: int
    address: str
    name: str
    unit_id: int
    unit_path: str


@dataclass
class ImportPlan:
    domain: Domain
    filename: str = ""
    rows: list[ImportRow] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, message); 0: whole file

    @property
    def ok(self) -> bool:
        return not self.errors


def check_csv(domain: Domain, data: bytes, filename: str = "") -> ImportPlan:
    """Read and check every row; changes nothing."""
    plan = ImportPlan(domain=domain, filename=filename)
    if len(data) > MAX_BYTES:
        message = _("The file is larger than %(mb)d MB: split it into smaller files.")
        plan.errors.append((0, message % {"mb": MAX_BYTES // (1024 * 1024)}))
        return plan
    try:
        text = data.decode("utf-8-sig")  # a BOM (Excel's "CSV UTF-8") is dropped
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        message = _("Line %(line)d is not UTF-8 text: save the file as “CSV UTF-8”.")
        plan.errors.append((line, message % {"line": line}))
        return plan

    units = {path: pk for pk, path in OrgUnit.objects.paths(domain.pk).items()}
    root_id = units[domain.name]
    existing = {
        email.lower()
        for email in Account.objects.filter(email__iendswith=f"@{domain.name}").values_list(
            "email", flat=True
        )
    }
    seen: dict[str, int] = {}
    reader = csv.reader(io.StringIO(text, newline=""))
    count = 0
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue  # blank lines are harmless
        if count == 0 and cells[0].strip().lower() in HEADER_WORDS:
            continue  # a header row
        count += 1
        if count > MAX_ROWS:
            plan.errors.append(
                (line, _("More than %(max)d rows: split the file.") % {"max": MAX_ROWS})
            )
            break
        error = _check_row(domain, cells, line, units, root_id, existing, seen, plan)
        if error:
            plan.errors.append((line, error))
    if count == 0 and not plan.errors:
        plan.errors.append((0, _("The file has no rows to import.")))
    return plan


def _check_row(domain, cells, line, units, root_id, existing, seen, plan) -> str | None:
    if len(cells) == 1 and ";" in cells[0]:
        return _(
            "Fields are separated by semicolons; save the file as comma-separated CSV "
            "(address,name,OU path)."
        )
    if len(cells) > 3:
        return _(
            "%(count)d fields; expected at most 3: address, name, OU path. Put quotes around a "
            "name that contains a comma."
        ) % {"count": len(cells)}
    address_text, name, path = (cells + ["", ""])[:3]
    try:
        address = _address(domain, address_text)
        key = address.lower()
        if key in seen:
            raise DirectoryError(
                _("%(address)s appears twice: also on line %(line)d.")
                % {"address": address, "line": seen[key]}
            )
        seen[key] = line
        if key in existing:
            raise DirectoryError(_("%(address)s already has an account.") % {"address": address})
        name = clean_display_name(name)
    except DirectoryError as exc:
        return str(exc)
    wanted = path.strip().strip("/")
    if wanted.startswith(f"{domain.name}/") or wanted == domain.name:
        wanted = wanted[len(domain.name) :].strip("/")
    full = f"{domain.name}/{wanted}" if wanted else domain.name
    unit_id = units.get(full)
    if unit_id is None:
        return _("%(domain)s has no OU %(path)s.") % {"domain": domain.name, "path": path.strip()}
    plan.rows.append(ImportRow(line, address, name, unit_id, full))
    return None


def _address(domain: Domain, text: str) -> str:
    if not text.strip():
        raise DirectoryError(_("The address is missing."))
    # Existing accounts were read once for the whole file, not asked row by row.
    return new_address(domain, text, check_existing=False)
