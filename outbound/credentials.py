"""App passwords for SMTP submission, and the throttle on failed submission logins.

An app password is a random token of about 75 bits, not a password a person chose: a keyed hash
(HMAC-SHA256 under a server key) protects it as well as a slow hash would, for microseconds of CPU
instead of PBKDF2's second per login. App passwords stored by earlier versions under Django's
password hashers still work, and get the keyed hash on their next successful use.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import string
from datetime import timedelta
from functools import cache
from typing import cast

from django.conf import settings
from django.contrib.auth.hashers import check_password
from django.db import connection
from django.utils import timezone

from directory.models import Account, Domain
from mailkit.logs import event
from mailkit.secrets import derived_keys
from outbox import rows

from . import metrics
from .models import AppPassword, AuthFailure

log = logging.getLogger("sendgate.submission")

_ALPHABET = string.ascii_lowercase  # easy to type on a phone; 16 letters carry about 75 bits


def create_app_password(account: Account, name: str) -> tuple[AppPassword, str]:
    """Store a new app password's hash and return the password itself, to show once."""
    plain = " ".join("".join(secrets.choice(_ALPHABET) for _ in range(4)) for _group in range(4))
    app_password = AppPassword.objects.create(
        account=account, name=name, password_hash=keyed_hash(plain)
    )
    return app_password, plain


def _canonical(password: str) -> str:
    # Shown in groups of four for reading; clients may send it with or without the spaces.
    return "".join(password.split()).lower()


KEYED = "hmac_sha256"  # stored as "hmac_sha256$<key id>$<hex digest>"
_PURPOSE = "sendgate app passwords"


def keyed_hash(password: str, key_id: str | None = None) -> str:
    """The stored form of an app password: under the newest key, or the one named."""
    keys = derived_keys(_PURPOSE)
    key_id, key = next(((i, k) for i, k in keys if i == key_id), keys[0])
    digest = hmac.new(key, _canonical(password).encode(), hashlib.sha256).hexdigest()
    return f"{KEYED}${key_id}${digest}"


def _verify(password: str, stored: str) -> bool:
    algorithm, _, rest = stored.partition("$")
    if algorithm != KEYED:
        return check_password(password, stored)  # stored by an earlier version (PBKDF2)
    key_id = rest.rpartition("$")[0]
    if key_id not in {i for i, _key in derived_keys(_PURPOSE)}:
        return False  # its key was retired: the user makes a new app password
    return hmac.compare_digest(keyed_hash(password, key_id), stored)


def slow_to_check(app_passwords: list[AppPassword]) -> bool:
    """Whether one of these is stored under a password hasher (slow on purpose), not keyed."""
    return any(not p.password_hash.startswith(f"{KEYED}$") for p in app_passwords)


def needs_rehash(app_password: AppPassword) -> bool:
    """Stored under a password hasher, or under a key that is no longer the newest."""
    return not app_password.password_hash.startswith(f"{KEYED}${derived_keys(_PURPOSE)[0][0]}$")


def candidates(login: str) -> list[AppPassword]:
    """App passwords of the active account whose primary address is ``login``, last used first,
    each with its account and the account's domain loaded (the session reads both)."""
    sql, app_password_columns, account_columns, domain_columns = _candidates_statement()
    found = rows.fetch_all(sql, [login.strip()])
    if not found:
        return []
    first_account = app_password_columns.width
    first_domain = first_account + account_columns.width
    account = account_columns.build(found[0][first_account:first_domain])
    domain_row = found[0][first_domain:]
    domain = domain_columns.build(domain_row) if domain_row[0] is not None else None
    rows.cache_related(account, "domain", domain)
    app_passwords = []
    for row in found:
        app_password = cast(AppPassword, app_password_columns.build(row[:first_account]))
        rows.cache_related(app_password, "account", account)
        app_passwords.append(app_password)
    return app_passwords


# A login's queries were written out: through the ORM, compiling them cost each session about
# 5 ms of the listener's CPU, more than a small message. Built once per process.
@cache
def _candidates_statement() -> tuple[str, rows.Columns, rows.Columns, rows.Columns]:
    app_password, account = rows.Columns(AppPassword, "p"), rows.Columns(Account, "a")
    domain = rows.Columns(Domain, "d")
    accounts = rows.table(Account)
    email, is_active = rows.column(Account, "email"), rows.column(Account, "is_active")
    last_used = rows.column(AppPassword, "last_used_at")
    sql = (
        f"SELECT {app_password.sql()}, {account.sql()}, {domain.sql()}"  # noqa: S608 - model names
        f" FROM {rows.table(AppPassword)} p"
        f" JOIN {accounts} a ON a.id = p.{rows.column(AppPassword, 'account')}"
        f" LEFT JOIN {rows.table(Domain)} d ON d.id = a.{rows.column(Account, 'domain')}"
        # The first active account with that address in any case, as email__iexact and
        # .first() found it; UPPER(email) is what the account_email_upper index holds.
        f" WHERE a.id = (SELECT id FROM {accounts}"
        f"  WHERE UPPER({email}) = UPPER(%s) AND {is_active} ORDER BY id LIMIT 1)"
        f" ORDER BY p.{last_used} DESC, p.id DESC"
    )
    return sql, app_password, account, domain


def matching(password: str, app_passwords: list[AppPassword]) -> AppPassword | None:
    """The app password that ``password`` is; pure CPU (hashing), no database access."""
    password = _canonical(password)
    if not app_passwords:
        # Hash anyway, so an unknown login takes as long as a wrong password (no enumeration by
        # timing), as Django's ModelBackend does.
        keyed_hash(password)
        return None
    for app_password in app_passwords:
        if _verify(password, app_password.password_hash):
            return app_password
    return None


def record_use(app_password: AppPassword, password: str) -> None:
    """Note the login; an app password still under an old hash gets the keyed one now."""
    now = rows.param(AppPassword, "last_used_at", timezone.now())
    if not needs_rehash(app_password):
        rows.execute(_touch_sql(), [now, app_password.pk])
        return
    rows.execute(_touch_sql(rehash=True), [now, keyed_hash(password), app_password.pk])


@cache
def _touch_sql(rehash: bool = False) -> str:
    changes = f"{rows.column(AppPassword, 'last_used_at')} = %s"
    if rehash:
        changes += f", {rows.column(AppPassword, 'password_hash')} = %s"
    return f"UPDATE {rows.table(AppPassword)} SET {changes} WHERE id = %s"  # noqa: S608


def still_valid(app_password_id: int) -> bool:
    """Whether a session that logged in with this app password may go on sending: the password
    is not revoked and its account is still active."""
    return bool(valid_app_password_ids({app_password_id}))


def valid_app_password_ids(app_password_ids: set[int]) -> set[int]:
    """Those of ``app_password_ids`` that are still valid (see ``still_valid``), in one query.

    The listener asks this before every commit of its messages: written out, the query costs a
    fifth of what the ORM spends compiling ``AppPassword.objects.filter(pk__in=…,
    account__is_active=True)``.
    """
    if not app_password_ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(_valid_ids_sql(len(app_password_ids)), list(app_password_ids))
        return {pk for (pk,) in cursor.fetchall()}


def all_valid_condition(app_password_ids: set[int]) -> tuple[str, list[int]]:
    """Whether every one of ``app_password_ids`` is still valid (see ``still_valid``), as an SQL
    condition and its parameters: for a statement that stores the messages of those logins
    only while they all hold (the listener's group: one round trip)."""
    ids = list(app_password_ids)
    valid = _valid_ids_sql(len(ids))
    condition = f"(SELECT COUNT(*) FROM ({valid}) AS still_valid) = %s"  # noqa: S608 - no input
    return condition, [*ids, len(ids)]


# Built once per count, not at every commit of the listener (a count is at most a group's size).
@cache
def _valid_ids_sql(count: int) -> str:
    account_id, is_active = rows.column(AppPassword, "account"), rows.column(Account, "is_active")
    return (
        f"SELECT p.id FROM {rows.table(AppPassword)} p "  # noqa: S608 - names from the models
        f"JOIN {rows.table(Account)} a ON a.id = p.{account_id} "
        f"WHERE p.id IN ({rows.placeholders(range(count))}) AND a.{is_active}"
    )


# --- throttling -------------------------------------------------------------------------------


def _window_start():
    return timezone.now() - timedelta(minutes=settings.SENDGATE_AUTH_FAILURE_WINDOW_MINUTES)


def is_locked(remote_ip: str, login: str) -> bool:
    """Too many recent failures from this address or for this login name."""
    since = rows.param(AuthFailure, "failed_at", _window_start())
    ip = rows.param(AuthFailure, "remote_ip", remote_ip)
    [(from_ip, for_login)] = rows.fetch_all(_failures_sql(), [since, ip, since, login.lower()])
    locked = max(from_ip, for_login) >= settings.SENDGATE_AUTH_MAX_FAILURES
    if locked:
        event(log, "submission.auth_locked", logging.WARNING, login=login, ip=remote_ip)
    return locked


@cache
def _failures_sql() -> str:
    """The failures in the window from an address, and for a login name."""
    failures, failed_at = rows.table(AuthFailure), rows.column(AuthFailure, "failed_at")
    count = f"SELECT COUNT(*) FROM {failures} WHERE {failed_at} >= %s AND"  # noqa: S608
    ip, login = rows.column(AuthFailure, "remote_ip"), rows.column(AuthFailure, "login")
    return f"SELECT ({count} {ip} = %s), ({count} {login} = %s)"


def record_failure(remote_ip: str, login: str) -> int:
    """Remember a failed login; return how many failures this address has in the window."""
    since = _window_start()
    AuthFailure.objects.filter(failed_at__lt=since).delete()  # keeps the table small
    AuthFailure.objects.create(remote_ip=remote_ip, login=login.lower()[:320])
    count = AuthFailure.objects.filter(remote_ip=remote_ip, failed_at__gte=since).count()
    event(
        log,
        "submission.auth_failed",
        logging.WARNING,
        login=login,
        ip=remote_ip,
        recent_failures_from_ip=count,
    )
    metrics.AUTH_FAILURES.inc()
    return count


def failure_delay(recent_failures: int) -> float:
    """Seconds to wait before answering a failed login: longer the more an address fails."""
    return settings.SENDGATE_AUTH_FAILURE_DELAY * min(recent_failures, 5)
