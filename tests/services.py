"""Skip a test that needs a service this machine lacks, unless CI demands every service."""

from __future__ import annotations

import os

import pytest


def services_required() -> bool:
    return os.environ.get("SENDGATE_REQUIRE_SERVICES") == "1"


def missing(reason: str) -> None:
    """Skip with ``reason``; under SENDGATE_REQUIRE_SERVICES=1 the missing service is a failure."""
    if services_required():
        pytest.fail(f"SENDGATE_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)
