"""One strict parser for every address Sendgate checks ownership of or puts into a message."""

from __future__ import annotations

import functools
import re

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext as _

# CR, LF and NUL, and every other character str.splitlines() breaks at (VT, FF, the file/group/
# record separators, NEL, U+2028, U+2029): the email package refuses those in a header value.
_FORBIDDEN = re.compile("[\r\n\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def reject_control_characters(value: str) -> str:
    """Refuse line breaks of any kind and NUL: they would let a value start a new header or
    SMTP command, or make the email package refuse the message."""
    if _FORBIDDEN.search(value):
        raise ValidationError(_("Line breaks and NUL characters are not allowed here."))
    return value


# A submission checks each message's sender three times and its recipients once or twice, and a
# sender's messages repeat the same addresses: Django's validator costs more than the rest of a
# RCPT command. Only answers are kept; a refusal is worked out (and translated) each time.
@functools.lru_cache(maxsize=4096)
def normalize_address(value: str) -> str:
    """Return ``local@domain`` with the domain lower-cased, or raise ValidationError."""
    value = reject_control_characters(value.strip())
    if "<" in value or ">" in value or " " in value or value.count("@") != 1:
        raise ValidationError(_("Enter a bare e-mail address such as ann@example.com."))
    if value.endswith("]"):
        # validate_email accepts address literals (ann@[192.0.2.1]); mail to and from them is
        # neither verifiable nor deliverable through a domain's path.
        raise ValidationError(_("Use an address at a domain name, not at an IP address."))
    validate_email(value)
    local, domain = value.rsplit("@", 1)
    return f"{local}@{domain.lower().rstrip('.')}"


def domain_of(address: str) -> str:
    return address.rsplit("@", 1)[1].lower()
