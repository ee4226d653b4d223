"""Two-step verification with django-otp: an authenticator app (TOTP) and recovery codes.

An account has at most one confirmed TOTP device and one set of recovery codes (a django-otp
static device whose tokens are deleted when used).
"""

from __future__ import annotations

from base64 import b32encode
from datetime import datetime, timedelta

import segno
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_otp import verify_token
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp_webauthn.models import WebAuthnCredential

from directory.models import Account, Domain

from .models import TwoStepDeadline

RECOVERY_CODE_COUNT = 10


def authenticator(account: Account) -> TOTPDevice | None:
    """The account's confirmed authenticator app, if it has one."""
    return TOTPDevice.objects.devices_for_user(account, confirmed=True).first()


def is_enrolled(account: Account) -> bool:
    return TOTPDevice.objects.devices_for_user(account, confirmed=True).exists()


def start_enrolment(account: Account) -> TOTPDevice:
    """A new, unconfirmed authenticator for this account (replacing an earlier unconfirmed one)."""
    TOTPDevice.objects.devices_for_user(account, confirmed=False).delete()
    return TOTPDevice.objects.create(user=account, name="Authenticator app", confirmed=False)


def pending_enrolment(account: Account) -> TOTPDevice | None:
    return TOTPDevice.objects.devices_for_user(account, confirmed=False).first()


def secret_text(device: TOTPDevice) -> str:
    """The key as authenticator apps let you type it: base32, in groups of four."""
    key = b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


def qr_code_data_uri(device: TOTPDevice) -> str:
    """The otpauth:// URL as an SVG QR code in a data: URL (no external service, CSP-safe)."""
    return segno.make(device.config_url, error="m").svg_data_uri(scale=5, border=2)


def confirm_enrolment(device: TOTPDevice, code: str) -> bool:
    """Confirm the authenticator with a first code from the app; True when it matched."""
    with transaction.atomic():
        if not device.verify_token(_digits(code)):
            return False
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        TOTPDevice.objects.devices_for_user(device.user, confirmed=True).exclude(
            pk=device.pk
        ).delete()
    return True


def new_recovery_codes(account: Account) -> list[str]:
    """Replace the account's recovery codes by RECOVERY_CODE_COUNT new ones; show them once."""
    with transaction.atomic():
        StaticDevice.objects.devices_for_user(account, confirmed=None).delete()
        device = StaticDevice.objects.create(user=account, name="Recovery codes", confirmed=True)
        tokens = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
        StaticToken.objects.bulk_create(StaticToken(device=device, token=t) for t in tokens)
    return [f"{token[:4]}-{token[4:]}" for token in tokens]


def recovery_codes_left(account: Account) -> int:
    return StaticToken.objects.filter(device__user=account, device__confirmed=True).count()


def verify_code(account: Account, code: str) -> Device | None:
    """The device that accepts ``code``: six digits for the app, else a recovery code (used up
    by this). django-otp throttles each device after wrong codes."""
    digits = _digits(code)
    if len(digits) == 6 and digits.isdigit():
        device = authenticator(account)
        token = digits
    else:
        device = StaticDevice.objects.devices_for_user(account, confirmed=True).first()
        token = "".join(code.split()).replace("-", "").lower()
    if device is None or not token:
        return None
    return verify_token(account, device.persistent_id, token)


def turn_off(account: Account) -> None:
    """Remove the authenticator, the recovery codes and the passkeys."""
    with transaction.atomic():
        TOTPDevice.objects.devices_for_user(account, confirmed=None).delete()
        StaticDevice.objects.devices_for_user(account, confirmed=None).delete()
        WebAuthnCredential.objects.filter(user=account).delete()


def _digits(code: str) -> str:
    return "".join(code.split())


# --- the domain requirement -------------------------------------------------------------------


def is_required(account: Account) -> bool:
    """Whether a domain this account administers requires two-step verification of admins."""
    return Domain.objects.for_admin(account).filter(require_two_step_for_admins=True).exists()


def enrolment_due(account: Account) -> datetime | None:
    """When this account must have enrolled, if it is required to and has not yet.

    The grace period starts the first time the requirement meets the account without a device.
    """
    if not is_required(account) or is_enrolled(account):
        return None
    grace = timedelta(days=settings.SENDGATE_TWO_STEP_GRACE_DAYS)
    deadline, _created = TwoStepDeadline.objects.get_or_create(
        account=account, defaults={"due_at": timezone.now() + grace}
    )
    return deadline.due_at


def set_requirement(domain: Domain, required: bool) -> None:
    """Switch the domain's requirement; switching it on gives every admin a fresh grace period."""
    with transaction.atomic():
        if required and not domain.require_two_step_for_admins:
            TwoStepDeadline.objects.filter(account__in=domain.admins.all()).delete()
        domain.require_two_step_for_admins = required
        domain.save(update_fields=["require_two_step_for_admins"])
