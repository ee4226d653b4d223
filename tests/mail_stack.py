"""A real submission server for end-to-end tests: Postfix, whose SMTP AUTH is Dovecot SASL with
Dovecot's ``oauth2`` passdb, which asks the test authorization server (RFC 7662 introspection)
whether a token is valid. Both run as private instances under a temporary directory, on loopback.
Postfix relays what it accepts to a recording sink, so a test sees what arrived.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"


def available() -> str | None:
    """Why the stack cannot run here, or None."""
    for binary in (DOVECOT, POSTFIX):
        if not Path(binary).exists():
            return f"{binary} is not installed (Debian packages dovecot-core and postfix)"
    return None


@dataclass
class MailStack:
    root: Path
    port: int

    @property
    def postfix_dir(self) -> Path:
        return self.root / "postfix"

    def log(self) -> str:
        texts = []
        for name in ("dovecot.log", "postfix.log"):
            path = self.root / name
            texts.append(f"--- {name} ---\n{path.read_text() if path.exists() else ''}")
        return "\n".join(texts)

    def stop(self) -> None:
        for step in (
            [POSTFIX, "-c", str(self.postfix_dir), "stop"],
            [DOVECOT, "-c", str(self.root / "dovecot.conf"), "stop"],
        ):
            subprocess.run(step, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


def _dovecot_config(root: Path, introspection_url: str, ca_file: str) -> Path:
    (root / "oauth2.conf.ext").write_text(
        f"introspection_mode = post\n"
        f"introspection_url = {introspection_url}\n"
        f"tls_ca_cert_file = {ca_file}\n"
        "force_introspection = yes\n"
        "username_attribute = username\n"
        "active_attribute = active\n"
        "active_value = true\n"
    )
    conf = root / "dovecot.conf"
    conf.write_text(
        f"base_dir = {root}/dovecot-run\n"
        f"state_dir = {root}/dovecot-state\n"
        f"log_path = {root}/dovecot.log\n"
        "protocols =\n"
        "ssl = no\n"
        "auth_mechanisms = xoauth2 oauthbearer\n"
        "auth_verbose = yes\n"
        "passdb {\n"
        "  driver = oauth2\n"
        "  mechanisms = xoauth2 oauthbearer\n"
        f"  args = {root}/oauth2.conf.ext\n"
        "}\n"
        "userdb {\n"
        "  driver = static\n"
        "  args = uid=nobody gid=nogroup home=/nonexistent\n"
        "}\n"
        "service auth {\n"
        f"  unix_listener {root}/auth-postfix {{\n"
        "    mode = 0666\n"
        "  }\n"
        "}\n"
    )
    return conf


MASTER_CF = """\
{port} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


def _postfix_config(root: Path, port: int, sink_port: int, cert: Path, key: Path) -> Path:
    conf = root / "postfix"
    conf.mkdir()
    (conf / "master.cf").write_text(MASTER_CF.format(port=port))
    (conf / "main.cf").write_text(
        "compatibility_level = 3.6\n"
        f"queue_directory = {root}/spool\n"
        f"data_directory = {root}/data\n"
        f"maillog_file = {root}/postfix.log\n"
        f"maillog_file_prefixes = {root}\n"
        "myhostname = postfix.test\n"
        "mydestination =\n"
        "alias_maps =\n"
        "alias_database =\n"
        "inet_interfaces = 127.0.0.1\n"
        "inet_protocols = ipv4\n"
        f"relayhost = [127.0.0.1]:{sink_port}\n"
        "smtp_tls_security_level = none\n"
        "smtp_sasl_auth_enable = no\n"
        "smtpd_sasl_auth_enable = yes\n"
        "smtpd_sasl_type = dovecot\n"
        f"smtpd_sasl_path = {root}/auth-postfix\n"
        "smtpd_tls_security_level = encrypt\n"
        "smtpd_tls_auth_only = yes\n"
        f"smtpd_tls_cert_file = {cert}\n"
        f"smtpd_tls_key_file = {key}\n"
        "smtpd_relay_restrictions = permit_sasl_authenticated, reject\n"
        "smtpd_recipient_restrictions = permit_sasl_authenticated, reject\n"
        "smtpd_sender_login_maps =\n"
    )
    return conf


def start(
    root: Path, *, port: int, sink_port: int, introspection_url: str, ca_file: str, pki
) -> MailStack:
    """Start Dovecot (auth only) and Postfix on ``port``; raise RuntimeError with the logs."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # Dovecot's and Postfix's own users must reach their files and sockets
    shutil.copy(ca_file, root / "ca.pem")
    ca_file = str(root / "ca.pem")
    cert, key = root / "cert.pem", root / "key.pem"
    server_cert = pki.ca.issue_cert("localhost", "127.0.0.1")
    server_cert.private_key_pem.write_to_path(str(key))
    with open(cert, "wb") as out:
        for blob in server_cert.cert_chain_pems:
            out.write(blob.bytes())
    stack = MailStack(root=root, port=port)
    (root / "spool").mkdir()  # Postfix creates its queue folders inside
    (root / "data").mkdir()
    shutil.chown(root / "data", "postfix", "postfix")
    conf = _dovecot_config(root, introspection_url, ca_file)
    _postfix_config(root, port, sink_port, cert, key)
    steps = [
        [DOVECOT, "-c", str(conf)],
        [POSTFIX, "-c", str(stack.postfix_dir), "start"],
    ]
    for step in steps:
        # Output to a file, not a pipe: the daemons keep inherited pipes open after forking.
        with open(root / "start.log", "a+") as out:
            done = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, timeout=120)
            if done.returncode != 0:
                out.seek(0)
                stack.stop()
                raise RuntimeError(f"{' '.join(step)} failed: {out.read()}\n{stack.log()}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (root / "auth-postfix").exists() and _listening(port):
            return stack
        time.sleep(0.2)
    stack.stop()
    raise RuntimeError(f"the mail stack did not come up\n{stack.log()}")


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
