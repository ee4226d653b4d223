"""The demo's fixed names and credentials, shared by `seed_demo`, `demo_sink` and the README."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

DOMAIN = "example.com"
PARTNER_DOMAIN = "partner.example"
OTHER_DOMAIN = "other.example"
ADMIN = "admin@example.com"
USER = "ann@example.com"
OUTSIDER = "zoe@other.example"
PASSWORD = "sendgate-demo"  # noqa: S105 - demo logins, printed on start

GATEWAY_PORT = 2525
PARTNER_PORT = 2587
SUBMISSION_PORT = 2588  # must match SENDGATE_SUBMISSION_PORT in config/demo.env
GATEWAY_LOGIN = ("relay@example.com", "gateway-demo-secret")
PARTNER_LOGIN = ("ann@partner.example", "partner-demo-secret")


def demo_dir() -> Path:
    path = settings.VAR_DIR / "demo"
    path.mkdir(parents=True, exist_ok=True)
    return path


def ca_file() -> Path:
    return demo_dir() / "ca.pem"


def server_cert_file() -> Path:
    return demo_dir() / "localhost.pem"


def ensure_certificates() -> None:
    """A private CA and a certificate for `localhost`, made once; Sendgate trusts the CA."""
    if ca_file().exists() and server_cert_file().exists():
        return
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1", "::1")
    leaf.private_key_and_cert_chain_pem.write_to_path(str(server_cert_file()))
    ca.cert_pem.write_to_path(str(ca_file()))
