"""Django settings for Sendgate, read from the environment (see .env.example).

With no environment at all Sendgate runs on its embedded defaults: SQLite in WAL mode and Celery on
kombu's filesystem transport, both under ``var/``.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")  # optional; a missing file is only logged

VAR_DIR = Path(env.str("SENDGATE_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DJANGO_DEBUG", default=False)


def _local_secret_key(path: Path) -> str:
    """A random key made once and kept in var/ (mode 0600), so a machine without
    DJANGO_SECRET_KEY still runs with a secret of its own; production sets the variable (every
    web process must share it)."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(50)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key + "\n")
        return key


SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or _local_secret_key(
    VAR_DIR / "django-secret.key"
)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "health_check",  # its `manage.py health_check` runs /health/'s checks in containers
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "django_otp_webauthn",
    "csp",
    # Bottom to top: each app imports only from the ones above it in this list (and mailkit).
    "directory",
    "signin",
    "domainkeys",
    "policy",
    "outbox",
    "gateways",
    "outbound",
    "operations",
]
if DEBUG:
    # Demo servers and `seed_demo`, for `make run`; a production instance does without them.
    INSTALLED_APPS.append("demo")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    # After sign-in: each person's times in their own zone (directory.time_zones).
    "directory.time_zones.UserTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "signin.middleware.ConsoleSessionMiddleware",
    "signin.middleware.TwoStepEnrolmentMiddleware",
    # Last, so it sees the failed sign-ins of the login views and answers with the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "config.navigation.navigation",
            ],
            "builtins": ["config.timeformat"],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'sendgate.sqlite3'}"),
}
# Seconds a process keeps its database connection between requests (0: a new one per request).
# Opening a PostgreSQL connection costs a backend process per request; reused, a console page is
# measured several times faster (docs/benchmarks.md). Checked before reuse, so a restarted
# database costs one failed check, not an error page.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Prepared statements on PostgreSQL: the server parses and plans each hot statement (the
# listener's INSERT, the worker's claim and saves) once per connection, not at every call, which
# halves its CPU per stored message (docs/benchmarks.md). psycopg prepares a statement once it
# ran this many times; they need server-side parameters, which cost more than Django's default
# client-side ones unless statements are prepared. A pooler in transaction mode (PgBouncer) keeps
# no prepared statements: 0 turns both off.
prepare_threshold = env.int("DJANGO_DB_PREPARE_THRESHOLD", default=5)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and prepare_threshold:
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"server_side_binding": True, "prepare_threshold": prepare_threshold}
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the workers write concurrently: WAL lets readers go on during a write,
    # IMMEDIATE takes the write lock up front instead of failing half-way with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "directory.Account"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# django-axes' backend first: it refuses a locked-out IP address or account before any password
# is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    # Signing in with a passkey (WebAuthn) instead of the password and code.
    "django_otp_webauthn.backends.WebAuthnBackend",
]
# Invitation and reset links (Django's password reset tokens) work once, for this long.
PASSWORD_RESET_TIMEOUT = env.int("SENDGATE_SET_PASSWORD_LINK_HOURS", default=72) * 3600
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("nl", "Nederlands")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = env.str("SENDGATE_TIME_ZONE", default="UTC")
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.str("DJANGO_STATIC_ROOT", default=str(VAR_DIR / "static"))
STATICFILES_DIRS = [BASE_DIR / "static"]
Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every start otherwise

# Secure by default; a plain-HTTP demo turns these off with DJANGO_DEBUG=1.
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy: everything from this site only, no inline script or style, no
# framing, forms post only here. The TOTP QR code is an inline SVG image (data: URL).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# --- Console sign-in ------------------------------------------------------------------------------
# django-axes counts failed console sign-ins in the database, so every web process shares them.
# After SENDGATE_LOGIN_MAX_FAILURES failures from one IP address, or for one account, further
# sign-ins from it are refused for SENDGATE_LOGIN_LOCKOUT_MINUTES after the last failure.
SENDGATE_LOGIN_MAX_FAILURES = env.int("SENDGATE_LOGIN_MAX_FAILURES", default=5)
SENDGATE_LOGIN_LOCKOUT_MINUTES = env.int("SENDGATE_LOGIN_LOCKOUT_MINUTES", default=15)
# Reverse proxies in front of the web app that append the client's address to X-Forwarded-For.
# 0: the client is REMOTE_ADDR. Behind one proxy and 0, every client would share the proxy's
# address, and a few failures would lock everyone out.
SENDGATE_TRUSTED_PROXY_COUNT = env.int("SENDGATE_TRUSTED_PROXY_COUNT", default=0)
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = SENDGATE_LOGIN_MAX_FAILURES
AXES_COOLOFF_TIME = timedelta(minutes=SENDGATE_LOGIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]  # either one locks
AXES_USERNAME_FORM_FIELD = "username"
AXES_USERNAME_CALLABLE = "signin.lockout.login_name"
AXES_CLIENT_IP_CALLABLE = "signin.lockout.client_ip"
AXES_LOCKOUT_CALLABLE = "signin.lockout.lockout_response"
AXES_ENABLE_ACCESS_FAILURE_LOG = True  # the failed sign-ins domain admins see
AXES_DISABLE_ACCESS_LOG = True  # successful sign-ins are the console sessions list instead
AXES_SENSITIVE_PARAMETERS = ["password", "code", "csrfmiddlewaretoken"]
AXES_VERBOSE = False
# Admins of a domain that requires two-step verification have this many days, from the first
# sign-in that meets the requirement, to enrol; until then they are sent to enrolment after each
# sign-in, afterwards they cannot use the console without it.
SENDGATE_TWO_STEP_GRACE_DAYS = env.int("SENDGATE_TWO_STEP_GRACE_DAYS", default=7)
# The issuer name authenticator apps show next to the account.
OTP_TOTP_ISSUER = "Sendgate"

# One line per event. "plain": text with key=value fields; "json": one JSON object per line, for
# log collectors.
LOG_FORMAT = env.str("SENDGATE_LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"SENDGATE_LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "()": "mailkit.logs.KeyValueFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "filters": {
        "known_noise": {
            "()": "mailkit.logs.DropKnownNoise",
            "fragments": [
                # aiosmtpd sets its own deprecated Session.login_data on every AUTH.
                "login_data is deprecated",
                # kombu, for the filesystem:// broker URL, which has no host by design.
                "No hostname was supplied",
            ],
        }
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["known_noise"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("SENDGATE_LOG_LEVEL", default="INFO")},
    # aiosmtpd logs every SMTP command at INFO; Sendgate logs logins and refusals itself.
    "loggers": {
        "mail.log": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
        # A line per task received and succeeded (the sweeper and the heartbeat run every 30 s)
        # would bury the lines that matter; failures are still logged.
        "celery.app.trace": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
    },
}

# --- Celery --------------------------------------------------------------------------------------
CELERY_DIR = Path(env.str("SENDGATE_CELERY_DIR", default=str(VAR_DIR / "celery")))
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
# Used by the filesystem:// transport (the embedded default); other transports ignore them.
(CELERY_DIR / "queue").mkdir(parents=True, exist_ok=True)
(CELERY_DIR / "processed").mkdir(parents=True, exist_ok=True)
(CELERY_DIR / "control").mkdir(parents=True, exist_ok=True)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "control_folder": str(CELERY_DIR / "control"),  # default: "control/" in the working directory
    "data_folder_in": str(CELERY_DIR / "queue"),
    "data_folder_out": str(CELERY_DIR / "queue"),
    "processed_folder": str(CELERY_DIR / "processed"),
    "store_processed": False,
}
CELERY_TASK_DEFAULT_QUEUE = env.str("SENDGATE_CELERY_QUEUE", default="sendgate")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
# Workers log through LOGGING above (its formatter keeps each event's fields; its filter drops
# known noise) instead of Celery replacing the root logger's handlers.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A task is acknowledged only when it finished, and re-queued if its worker died mid-way
# (acks_late alone does not redeliver after SIGKILL: celery#1628).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fix-up closes every database connection before and after each task unless this
# is set: a new PostgreSQL session (a server process) for each delivery wake-up. With it set, a
# worker keeps its connection as a web process does (config/celery.py: up to CONN_MAX_AGE,
# dropped once broken); the fix-up then closes it only every this many tasks.
CELERY_DB_REUSE_MAX = 10_000
# Time limits follow from SENDGATE_BATCH_SECONDS and SENDGATE_SMTP_DEADLINE (set below): a batch
# starts no message after its budget and each message has one deadline, so a task always ends
# (and records its outcomes) before Celery's limits stop it.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(CELERY_DIR / "beat-schedule")
CELERY_BEAT_SCHEDULE = {
    # The database is the outbox; the sweeper re-queues whatever a lost task left behind.
    "sweep-outbox": {"task": "outbound.tasks.sweep_outbox", "schedule": 30.0},
    "resume-policy-propagation": {"task": "policy.tasks.resume_propagation", "schedule": 60.0},
    "retest-gateways": {"task": "gateways.tasks.retest_gateways", "schedule": 3600.0},
    "prune": {"task": "operations.tasks.prune", "schedule": 86400.0},
    "heartbeat": {"task": "operations.tasks.heartbeat", "schedule": 30.0},
    # A DKIM key waiting for its DNS record starts signing once the record is published; an
    # active key's record is checked daily.
    "check-dkim-keys": {"task": "domainkeys.tasks.check_dkim_keys", "schedule": 600.0},
    "resume-import-invitations": {
        "task": "outbox.tasks.resume_import_invitations",
        "schedule": 120.0,
    },
}

# --- Sendgate ------------------------------------------------------------------------------------
# Fernet keys for SMTP passwords, newest first: "id:key,id:key". Values encrypted under an older
# key still decrypt; `manage.py rotate_secrets` re-encrypts them under the first one.
SENDGATE_SECRETS_KEYS = env.str("SENDGATE_SECRETS_KEYS", default="")
SENDGATE_SECRETS_KEY_FILE = VAR_DIR / "secrets.key"  # demo key, generated when none is set
# Extra CA certificates (PEM) trusted for outbound TLS, on top of the system store.
SENDGATE_EXTRA_CA_FILE = env.str("SENDGATE_EXTRA_CA_FILE", default="")
# User-supplied SMTP hosts must resolve to public addresses; these networks are allowed anyway
# (an operator's own relays; loopback for the demo and the tests).
SENDGATE_SMTP_ALLOWED_NETWORKS = env.list("SENDGATE_SMTP_ALLOWED_NETWORKS", default=[])
# SMTP servers may listen on 25, 465, 587 and 2525; any other port must be listed here.
SENDGATE_SMTP_ALLOWED_PORTS = env.list(
    "SENDGATE_SMTP_ALLOWED_PORTS", default=[]
)  # "2587,3000-3100"
# Whether users may pick "no TLS" (port 25 only) for their own SMTP server. Off: passwords and
# mail would cross the internet in clear.
SENDGATE_SMTP_ALLOW_PLAINTEXT = env.bool("SENDGATE_SMTP_ALLOW_PLAINTEXT", default=False)
# Sendgate's own mail (confirmation codes, delivery reports, notices) comes from this address,
# "Name <address>" or a bare address. Empty: MAILER-DAEMON at the account's domain.
SENDGATE_SYSTEM_FROM = env.str("SENDGATE_SYSTEM_FROM", default="")
# The console's public address, for links in mails (confirmation links).
SENDGATE_CONSOLE_URL = env.str("SENDGATE_CONSOLE_URL", default="http://localhost:8000")
# Passkeys belong to the console's host name (the WebAuthn "relying party"): they work only at
# SENDGATE_CONSOLE_URL, which must then use a host name (WebAuthn refuses IP addresses). Changing
# that host name later makes every registered passkey useless.
OTP_WEBAUTHN_RP_NAME = "Sendgate"
OTP_WEBAUTHN_RP_ID = urlsplit(SENDGATE_CONSOLE_URL).hostname or "localhost"
OTP_WEBAUTHN_ALLOWED_ORIGINS = [
    f"{urlsplit(SENDGATE_CONSOLE_URL).scheme}://{urlsplit(SENDGATE_CONSOLE_URL).netloc}"
]
# Users' SMTP servers are re-tested when their last test is older than this many hours.
SENDGATE_GATEWAY_RETEST_HOURS = env.int("SENDGATE_GATEWAY_RETEST_HOURS", default=24)
# "Forgot my password" requests per hour, for one address and for one client IP address.
SENDGATE_PASSWORD_RESETS_PER_HOUR = env.int("SENDGATE_PASSWORD_RESETS_PER_HOUR", default=5)
# A send-as confirmation code is valid this many hours.
SENDGATE_CONFIRMATION_HOURS = env.int("SENDGATE_CONFIRMATION_HOURS", default=72)
# Connection tests a user may run per hour (each one dials a server on their behalf).
SENDGATE_CONNECTION_TESTS_PER_HOUR = env.int("SENDGATE_CONNECTION_TESTS_PER_HOUR", default=20)
# All DNS look-ups of one deliverability check (SPF, DMARC, the gateway's addresses) share this
# many seconds; what does not answer in time is shown as unknown.
SENDGATE_DELIVERABILITY_SECONDS = env.float("SENDGATE_DELIVERABILITY_SECONDS", default=10.0)
# The whole SMTP session of one attempt (connect to QUIT) must finish within this many seconds.
SENDGATE_SMTP_DEADLINE = env.float("SENDGATE_SMTP_DEADLINE", default=60.0)
SENDGATE_SMTP_HELO_NAME = env.str("SENDGATE_SMTP_HELO_NAME", default="sendgate.localhost")
# A delivery worker keeps its sessions to gateways open this many seconds after a task, for the
# next task to the same server (same credentials), and at most this many idle sessions per
# worker process (mailkit/smtp_pool.py). 0 sessions: close each one after its batch.
SENDGATE_SMTP_IDLE_SECONDS = env.float("SENDGATE_SMTP_IDLE_SECONDS", default=5.0)
SENDGATE_SMTP_IDLE_MAX = env.int("SENDGATE_SMTP_IDLE_MAX", default=50)
# Retry schedule for temporary failures, in minutes after the previous attempt; the last value
# repeats until the message is older than SENDGATE_MAX_QUEUE_DAYS.
# Fractions are fine: 0.5 is thirty seconds.
SENDGATE_RETRY_MINUTES = env.list(
    "SENDGATE_RETRY_MINUTES", cast=float, default=[5.0, 10.0, 20.0, 40.0, 60.0]
)
SENDGATE_MAX_QUEUE_DAYS = env.float("SENDGATE_MAX_QUEUE_DAYS", default=5.0)
# Tell the sender once when a message is still undelivered after this many hours (0: never).
SENDGATE_DELAY_WARNING_HOURS = env.float("SENDGATE_DELAY_WARNING_HOURS", default=0.0)
# Port for direct delivery to recipients' MX hosts. Always 25 on the internet; lab networks and
# the tests point it elsewhere.
SENDGATE_DIRECT_MX_PORT = env.int("SENDGATE_DIRECT_MX_PORT", default=25)
# Direct delivery honours recipients' MTA-STS policies (RFC 8461); the policy fetch's time limit.
SENDGATE_MTA_STS = env.bool("SENDGATE_MTA_STS", default=True)
SENDGATE_MTA_STS_TIMEOUT = env.float("SENDGATE_MTA_STS_TIMEOUT", default=10.0)
# A claimed message whose worker vanished is retried after this many seconds.
SENDGATE_CLAIM_LEASE_SECONDS = env.int("SENDGATE_CLAIM_LEASE_SECONDS", default=300)
# Messages the sweeper hands one task at a time; a batch shares one connection per server.
SENDGATE_BATCH_SIZE = env.int("SENDGATE_BATCH_SIZE", default=200)
# A batch starts no new message after this many seconds (well inside the task time limit), so
# its outcomes are always recorded; what it did not start is handed back at once.
SENDGATE_BATCH_SECONDS = env.float("SENDGATE_BATCH_SECONDS", default=60.0)
# The last message a batch starts may take one more SENDGATE_SMTP_DEADLINE; then the outcomes are
# saved. The limits leave room for that, so no delivery task outlives them.
CELERY_TASK_SOFT_TIME_LIMIT = int(SENDGATE_BATCH_SECONDS + SENDGATE_SMTP_DEADLINE) + 30
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 30
# A message whose handling fails inside Sendgate (not at the peer) the same way this many times
# in a row fails with a report, instead of being retried for days.
SENDGATE_SAME_ERROR_LIMIT = env.int("SENDGATE_SAME_ERROR_LIMIT", default=3)
# Policy propagation: the first UPDATE batch spans this many account ids; batches then double
# while one takes under half of SENDGATE_POLICY_BATCH_SECONDS and shrink again (never below the
# first) when one takes longer, so each holds its row locks about that long (0: never grow).
# The lease: how long a worker holds a propagation before beat may hand it to another (renewed
# after every batch).
SENDGATE_POLICY_BATCH_SIZE = env.int("SENDGATE_POLICY_BATCH_SIZE", default=5000)
SENDGATE_POLICY_BATCH_SECONDS = env.float("SENDGATE_POLICY_BATCH_SECONDS", default=0.2)
SENDGATE_POLICY_LEASE_SECONDS = env.int("SENDGATE_POLICY_LEASE_SECONDS", default=60)

# --- OAuth 2.0 sign-in for users' SMTP servers (README: "Sign in with Microsoft or Google") -------
# A provider is offered on the send-as pages when its client id is set. The redirect URI to
# register with each provider is SENDGATE_CONSOLE_URL + /settings/send-as/oauth/callback/.
SENDGATE_OAUTH_MICROSOFT_CLIENT_ID = env.str("SENDGATE_OAUTH_MICROSOFT_CLIENT_ID", default="")
SENDGATE_OAUTH_MICROSOFT_CLIENT_SECRET = env.str(
    "SENDGATE_OAUTH_MICROSOFT_CLIENT_SECRET", default=""
)
# "organizations" lets any work account sign in; a tenant id or domain limits it to one tenant.
SENDGATE_OAUTH_MICROSOFT_TENANT = env.str(
    "SENDGATE_OAUTH_MICROSOFT_TENANT", default="organizations"
)
SENDGATE_OAUTH_GOOGLE_CLIENT_ID = env.str("SENDGATE_OAUTH_GOOGLE_CLIENT_ID", default="")
SENDGATE_OAUTH_GOOGLE_CLIENT_SECRET = env.str("SENDGATE_OAUTH_GOOGLE_CLIENT_SECRET", default="")
# Any other provider whose SMTP servers take XOAUTH2 or OAUTHBEARER.
SENDGATE_OAUTH_GENERIC_NAME = env.str("SENDGATE_OAUTH_GENERIC_NAME", default="")
SENDGATE_OAUTH_GENERIC_CLIENT_ID = env.str("SENDGATE_OAUTH_GENERIC_CLIENT_ID", default="")
SENDGATE_OAUTH_GENERIC_CLIENT_SECRET = env.str("SENDGATE_OAUTH_GENERIC_CLIENT_SECRET", default="")
SENDGATE_OAUTH_GENERIC_AUTHORIZE_URL = env.str("SENDGATE_OAUTH_GENERIC_AUTHORIZE_URL", default="")
SENDGATE_OAUTH_GENERIC_TOKEN_URL = env.str("SENDGATE_OAUTH_GENERIC_TOKEN_URL", default="")
SENDGATE_OAUTH_GENERIC_SCOPE = env.str("SENDGATE_OAUTH_GENERIC_SCOPE", default="")
SENDGATE_OAUTH_GENERIC_SMTP_HOST = env.str("SENDGATE_OAUTH_GENERIC_SMTP_HOST", default="")
SENDGATE_OAUTH_GENERIC_SMTP_PORT = env.int("SENDGATE_OAUTH_GENERIC_SMTP_PORT", default=587)
# starttls or tls
SENDGATE_OAUTH_GENERIC_SMTP_SECURITY = env.str(
    "SENDGATE_OAUTH_GENERIC_SMTP_SECURITY", default="starttls"
)
# Seconds for one call to a token endpoint.
SENDGATE_OAUTH_TIMEOUT = env.float("SENDGATE_OAUTH_TIMEOUT", default=15.0)
# Access tokens are renewed when they expire within this many seconds.
SENDGATE_OAUTH_REFRESH_MARGIN = env.int("SENDGATE_OAUTH_REFRESH_MARGIN", default=300)

# --- SMTP submission (manage.py submission) -------------------------------------------------------
SENDGATE_SUBMISSION_HOST = env.str("SENDGATE_SUBMISSION_HOST", default="127.0.0.1")
SENDGATE_SUBMISSION_PORT = env.int("SENDGATE_SUBMISSION_PORT", default=587)
# Implicit TLS ("submissions", usually 465); 0 turns it off.
SENDGATE_SUBMISSION_TLS_PORT = env.int("SENDGATE_SUBMISSION_TLS_PORT", default=0)
# The operator's certificate chain and key (PEM); the key may be in the certificate file.
SENDGATE_SUBMISSION_CERT_FILE = env.str("SENDGATE_SUBMISSION_CERT_FILE", default="")
SENDGATE_SUBMISSION_KEY_FILE = env.str("SENDGATE_SUBMISSION_KEY_FILE", default="")
# Name in the greeting and in the Received: header.
SENDGATE_SUBMISSION_HOSTNAME = env.str(
    "SENDGATE_SUBMISSION_HOSTNAME", default=SENDGATE_SMTP_HELO_NAME
)
# Demo only: let clients on loopback log in without TLS. Everyone else must use TLS first.
SENDGATE_SUBMISSION_PLAINTEXT_AUTH_ON_LOOPBACK = env.bool(
    "SENDGATE_SUBMISSION_PLAINTEXT_AUTH_ON_LOOPBACK", default=False
)
SENDGATE_SUBMISSION_MAX_MESSAGE_BYTES = env.int(
    "SENDGATE_SUBMISSION_MAX_MESSAGE_BYTES", default=25 * 1024 * 1024
)
# Concurrent sessions one client address, and one account, may hold on the listener; beyond,
# "421 4.7.0" (the client tries again later). Each session may hold a message in memory.
SENDGATE_SUBMISSION_MAX_SESSIONS_PER_IP = env.int(
    "SENDGATE_SUBMISSION_MAX_SESSIONS_PER_IP", default=20
)
SENDGATE_SUBMISSION_MAX_SESSIONS_PER_ACCOUNT = env.int(
    "SENDGATE_SUBMISSION_MAX_SESSIONS_PER_ACCOUNT", default=10
)
SENDGATE_SUBMISSION_MAX_RECIPIENTS = env.int("SENDGATE_SUBMISSION_MAX_RECIPIENTS", default=100)
# Listener processes sharing the ports (SO_REUSEPORT): each stores its messages in one database
# thread, so one per core uses the machine; 0 means one per core. The session caps above hold per
# process.
SENDGATE_SUBMISSION_PROCESSES = env.int("SENDGATE_SUBMISSION_PROCESSES", default=0)
# Messages one account may submit in any 24 hours (SMTP, sendmail and compose together).
SENDGATE_DAILY_MESSAGE_LIMIT = env.int("SENDGATE_DAILY_MESSAGE_LIMIT", default=2000)
# Login throttling: this many failures within the window from one IP address, or for one login
# name, lock further attempts from it until the window has passed; each failure is answered late.
SENDGATE_AUTH_MAX_FAILURES = env.int("SENDGATE_AUTH_MAX_FAILURES", default=10)
SENDGATE_AUTH_FAILURE_WINDOW_MINUTES = env.int("SENDGATE_AUTH_FAILURE_WINDOW_MINUTES", default=15)
SENDGATE_AUTH_FAILURE_DELAY = env.float("SENDGATE_AUTH_FAILURE_DELAY", default=1.0)

# --- Operations: metrics, health, retention -------------------------------------------------------
# Prometheus metrics at /metrics and the full health report at /health/ answer loopback clients,
# and others only with "Authorization: Bearer <this token>" (empty: loopback only).
SENDGATE_METRICS_TOKEN = env.str("SENDGATE_METRICS_TOKEN", default="")
# Every process (web, workers, listener) writes its counters here; /metrics adds them up. Processes
# in several containers must share it (a volume in docker-compose.yml).
SENDGATE_METRICS_DIR = Path(env.str("SENDGATE_METRICS_DIR", default=str(VAR_DIR / "metrics")))
SENDGATE_METRICS_DIR.mkdir(parents=True, exist_ok=True)
# prometheus_client reads this when it is first imported, which happens after settings load.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(SENDGATE_METRICS_DIR))
# Beat runs the outbox sweeper every 30 s; /health/ reports beat as down past this many seconds.
SENDGATE_BEAT_STALE_SECONDS = env.int("SENDGATE_BEAT_STALE_SECONDS", default=180)
# Retention (`manage.py prune`, and beat daily): the bodies of finished messages (sent or failed)
# are removed after this many days, their metadata kept; delivery attempts of finished messages
# and connection tests after the second number of days. 0 keeps them forever.
SENDGATE_RETENTION_BODY_DAYS = env.int("SENDGATE_RETENTION_BODY_DAYS", default=30)
SENDGATE_RETENTION_RECORD_DAYS = env.int("SENDGATE_RETENTION_RECORD_DAYS", default=180)
