"""A private Postfix (Debian package) configured as the per-sender relay Sendgate replaces.

Submission on a loopback port with STARTTLS required and SASL through Dovecot's auth socket
(Dovecot runs as an auth-only private instance); each sender may only send as itself
(``reject_sender_login_mismatch``); each alias sender is relayed through its own relay host with
its own credentials (``sender_dependent_relayhost_maps``,
``smtp_sender_dependent_authentication``), everyone else through a default relay host; the relay
leg verifies the relay's certificate (``smtp_tls_security_level = verify``). Both daemons live in
one temporary directory that ``stop()`` removes.

Tuning beyond Debian's defaults is only what an administrator would set: the TLS session caches
Debian's main.cf ships, ``smtp_host_lookup = native`` (the relays are ``localhost`` in
/etc/hosts, not DNS) and, with ``tls_connection_reuse``, ``smtp_tls_connection_reuse = yes``
(Postfix does not cache TLS connections by default).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from bench.common import listening

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTMAP = shutil.which("postmap") or "/usr/sbin/postmap"

# Debian's master.cf, trimmed to the services a relay needs, plus the submission service.
MASTER_CF = """\
{port} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_auth_only=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_sender_restrictions=reject_sender_login_mismatch
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
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
tlsproxy unix - - n - 0 tlsproxy
postlog unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/spool
data_directory = {root}/data
maillog_file = {root}/postfix.log
maillog_file_prefixes = {root}
myhostname = postfix.bench.test
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4

# Submission: STARTTLS (required on the service in master.cf), SASL through Dovecot.
smtpd_tls_chain_files = {root}/localhost.pem
smtpd_tls_session_cache_database = btree:${{data_directory}}/smtpd_scache
smtpd_sasl_type = dovecot
smtpd_sasl_path = {root}/auth-postfix
smtpd_sender_login_maps = hash:{root}/sender_logins

# Relay: per-sender relay host and credentials, a default relay host for everyone else.
relayhost = [localhost]:{gateway_port}
sender_dependent_relayhost_maps = hash:{root}/sender_relayhosts
smtp_sender_dependent_authentication = yes
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = hash:{root}/sasl_passwd
smtp_sasl_security_options = noanonymous
smtp_sasl_tls_security_options = noanonymous
smtp_tls_security_level = verify
smtp_tls_CAfile = {root}/ca.pem
smtp_tls_session_cache_database = btree:${{data_directory}}/smtp_scache
smtp_tls_connection_reuse = {tls_reuse}
smtp_host_lookup = native
"""

DOVECOT_CONF = """\
base_dir = {root}/dovecot-run
state_dir = {root}/dovecot-state
log_path = {root}/dovecot.log
protocols =
ssl = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = {root}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service auth {{
  unix_listener {root}/auth-postfix {{
    mode = 0666
  }}
}}
"""


class PostfixStack:
    """Dovecot (auth only) and Postfix under ``root``; ``stop()`` is safe to call twice."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.running = False

    @property
    def config_dir(self) -> Path:
        return self.root / "postfix"

    def log_tail(self, lines: int = 30) -> str:
        texts = []
        for name in ("start.log", "dovecot.log", "postfix.log"):
            path = self.root / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                texts.append(f"--- {name} ---\n" + "\n".join(tail))
        return "\n".join(texts)

    def stop(self) -> None:
        if self.running:
            for step in (
                [POSTFIX, "-c", str(self.config_dir), "stop"],
                [DOVECOT, "-c", str(self.root / "dovecot.conf"), "stop"],
            ):
                subprocess.run(
                    step, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60
                )
            self.running = False
        shutil.rmtree(self.root, ignore_errors=True)


def available() -> str | None:
    """Why Postfix and Dovecot cannot run here, or None."""
    for binary in (DOVECOT, DOVEADM, POSTFIX, POSTMAP):
        if not Path(binary).exists():
            return f"{binary} is not installed (Debian packages postfix and dovecot-core)"
    return None


def start(
    root: Path,
    *,
    port: int,
    plan: list[tuple[str, str, int | None]],
    password: str,
    gateway_port: int,
    alias_ports: list[int],
    ca_pem: Path,
    chain_pem: Path,
    tls_connection_reuse: bool = False,
) -> PostfixStack:
    """Configure and start the stack for the (login, From, alias sink) ``plan``.

    Every login has ``password``; the relays take any credentials. On failure the stack is
    stopped and RuntimeError carries the logs.
    """
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # Dovecot's and Postfix's own users must reach their files and sockets
    stack = PostfixStack(root, port)
    shutil.copy(ca_pem, root / "ca.pem")
    shutil.copy(chain_pem, root / "localhost.pem")  # key first, then the chain
    (root / "spool").mkdir()  # Postfix creates its queue folders inside
    (root / "data").mkdir()
    shutil.chown(root / "data", "postfix", "postfix")
    _write_maps(root, plan, password, gateway_port, alias_ports)
    (root / "dovecot.conf").write_text(DOVECOT_CONF.format(root=root))
    stack.config_dir.mkdir()
    (stack.config_dir / "master.cf").write_text(MASTER_CF.format(port=port))
    (stack.config_dir / "main.cf").write_text(
        MAIN_CF.format(
            root=root,
            gateway_port=gateway_port,
            tls_reuse="yes" if tls_connection_reuse else "no",
        )
    )
    stack.running = True
    for step in (
        [DOVECOT, "-c", str(root / "dovecot.conf")],
        [POSTFIX, "-c", str(stack.config_dir), "start"],
    ):
        # Output to a file, not a pipe: the daemons keep inherited pipes open after forking.
        with open(root / "start.log", "a") as out:
            done = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, timeout=120)
        if done.returncode != 0:
            logs = stack.log_tail()
            stack.stop()
            raise RuntimeError(f"{' '.join(step)} failed\n{logs}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (root / "auth-postfix").exists() and listening(port):
            return stack
        time.sleep(0.2)
    logs = stack.log_tail()
    stack.stop()
    raise RuntimeError(f"Postfix and Dovecot did not come up\n{logs}")


def _write_maps(
    root: Path,
    plan: list[tuple[str, str, int | None]],
    password: str,
    gateway_port: int,
    alias_ports: list[int],
) -> None:
    """Dovecot's users, and the Postfix lookup tables an administrator would keep."""
    digest = subprocess.run(
        [DOVEADM, "pw", "-s", "SHA512-CRYPT", "-p", password],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    logins = sorted({login for login, _sender, _sink in plan})
    (root / "users").write_text("".join(f"{login}:{digest}\n" for login in logins))
    (root / "sender_logins").write_text(
        "".join(f"{sender} {login}\n" for login, sender, _sink in plan)
    )
    aliases = [(sender, alias_ports[sink]) for _login, sender, sink in plan if sink is not None]
    (root / "sender_relayhosts").write_text(
        "".join(f"{sender} [localhost]:{port}\n" for sender, port in aliases)
    )
    # Per alias sender, then per relay host for the senders that use the default one.
    (root / "sasl_passwd").write_text(
        "".join(f"{sender} bench:bench\n" for sender, _port in aliases)
        + f"[localhost]:{gateway_port} bench:bench\n"
    )
    for table in ("sender_logins", "sender_relayhosts", "sasl_passwd"):
        subprocess.run([POSTMAP, f"hash:{root / table}"], check=True)
