"""System checks: a half-configured sign-in provider fails at start, not at a user's click."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register


@register()
def check_oauth_providers(app_configs, **kwargs) -> list[Error]:
    errors = []
    for name in ("MICROSOFT", "GOOGLE", "GENERIC"):
        prefix = f"SENDGATE_OAUTH_{name}_"
        if getattr(settings, prefix + "CLIENT_ID") and not getattr(
            settings, prefix + "CLIENT_SECRET"
        ):
            errors.append(
                Error(
                    f"{prefix}CLIENT_ID is set but {prefix}CLIENT_SECRET is empty.",
                    hint="Copy the client secret from the provider's app registration.",
                    id="sendgate.E101",
                )
            )
    if settings.SENDGATE_OAUTH_GENERIC_CLIENT_ID:
        needed = ["NAME", "AUTHORIZE_URL", "TOKEN_URL", "SCOPE", "SMTP_HOST"]
        missing = [
            f"SENDGATE_OAUTH_GENERIC_{n}"
            for n in needed
            if not getattr(settings, f"SENDGATE_OAUTH_GENERIC_{n}")
        ]
        if missing:
            errors.append(
                Error(
                    "The generic sign-in provider needs " + ", ".join(missing) + ".",
                    id="sendgate.E102",
                )
            )
        for n in ("AUTHORIZE_URL", "TOKEN_URL"):
            url = getattr(settings, f"SENDGATE_OAUTH_GENERIC_{n}")
            if url and not url.startswith("https://"):
                errors.append(
                    Error(
                        f"SENDGATE_OAUTH_GENERIC_{n} must be an https:// URL.", id="sendgate.E103"
                    )
                )
        if settings.SENDGATE_OAUTH_GENERIC_SMTP_SECURITY not in ("starttls", "tls"):
            errors.append(
                Error(
                    "SENDGATE_OAUTH_GENERIC_SMTP_SECURITY must be starttls or tls.",
                    id="sendgate.E104",
                )
            )
    return errors
