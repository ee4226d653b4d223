"""System checks: a mistyped system address stops the start with a clear message."""

from __future__ import annotations

from django.core.checks import Error, register

from .notices import system_from_setting


@register()
def check_system_from(app_configs, **kwargs) -> list[Error]:
    try:
        system_from_setting()
    except ValueError as error:
        return [
            Error(
                f"SENDGATE_SYSTEM_FROM is not a usable address: {error}",
                hint='Use "Name <address@your-domain>" or a bare address, or leave it empty.',
                id="sendgate.E010",
            )
        ]
    return []
