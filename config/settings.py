"""Django settings for Sendgate, read from the environment (see .env.example).

With no environment at all Sendgate runs on its embedded defaults: SQLite in WAL mode and Celery on
kombu's filesystem transport, both under ``var/``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import environ

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
    # Bottom to top: each app imports only from the ones above it in this list (and mailkit).
    "directory",
    "policy",
    "outbox",
    "gateways",
    "outbound",
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
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
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
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'sendgate.sqlite3'}"),
}
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
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("SENDGATE_LOG_LEVEL", default="INFO")},
    # aiosmtpd logs every SMTP command at INFO; Sendgate logs logins and refusals itself.
    "loggers": {"mail.log": {"level": "WARNING"}},
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
# A task is acknowledged only when it finished, and re-queued if its worker died mid-way
# (acks_late alone does not redeliver after SIGKILL: celery#1628).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 120
CELERY_TASK_TIME_LIMIT = 150
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(CELERY_DIR / "beat-schedule")
CELERY_BEAT_SCHEDULE = {
    # The database is the outbox; the sweeper re-queues whatever a lost task left behind.
    "sweep-outbox": {"task": "outbound.tasks.sweep_outbox", "schedule": 30.0},
    "resume-policy-propagation": {"task": "policy.tasks.resume_propagation", "schedule": 60.0},
    "retest-gateways": {"task": "gateways.tasks.retest_gateways", "schedule": 3600.0},
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
# The console's public address, for links in mails (confirmation links).
SENDGATE_CONSOLE_URL = env.str("SENDGATE_CONSOLE_URL", default="http://127.0.0.1:8000")
# Users' SMTP servers are re-tested when their last test is older than this many hours.
SENDGATE_GATEWAY_RETEST_HOURS = env.int("SENDGATE_GATEWAY_RETEST_HOURS", default=24)
# A send-as confirmation code is valid this many hours.
SENDGATE_CONFIRMATION_HOURS = env.int("SENDGATE_CONFIRMATION_HOURS", default=72)
# Connection tests a user may run per hour (each one dials a server on their behalf).
SENDGATE_CONNECTION_TESTS_PER_HOUR = env.int("SENDGATE_CONNECTION_TESTS_PER_HOUR", default=20)
# The whole SMTP session of one attempt (connect to QUIT) must finish within this many seconds.
SENDGATE_SMTP_DEADLINE = env.float("SENDGATE_SMTP_DEADLINE", default=60.0)
SENDGATE_SMTP_HELO_NAME = env.str("SENDGATE_SMTP_HELO_NAME", default="sendgate.localhost")
# Retry schedule for temporary failures, in minutes after the previous attempt; the last value
# repeats until the message is older than SENDGATE_MAX_QUEUE_DAYS.
SENDGATE_RETRY_MINUTES = env.list("SENDGATE_RETRY_MINUTES", cast=int, default=[5, 10, 20, 40, 60])
SENDGATE_MAX_QUEUE_DAYS = env.float("SENDGATE_MAX_QUEUE_DAYS", default=5.0)
# Tell the sender once when a message is still undelivered after this many hours (0: never).
SENDGATE_DELAY_WARNING_HOURS = env.float("SENDGATE_DELAY_WARNING_HOURS", default=0.0)
# Port for direct delivery to recipients' MX hosts. Always 25 on the internet; lab networks and
# the tests point it elsewhere.
SENDGATE_DIRECT_MX_PORT = env.int("SENDGATE_DIRECT_MX_PORT", default=25)
# A claimed message whose worker vanished is retried after this many seconds.
SENDGATE_CLAIM_LEASE_SECONDS = env.int("SENDGATE_CLAIM_LEASE_SECONDS", default=300)
# Messages the sweeper hands one task at a time; a batch shares one connection per server.
SENDGATE_BATCH_SIZE = env.int("SENDGATE_BATCH_SIZE", default=200)
# A batch starts no new message after this many seconds (well inside the task time limit), so
# its outcomes are always recorded; what it did not start is handed back at once.
SENDGATE_BATCH_SECONDS = env.float("SENDGATE_BATCH_SECONDS", default=60.0)
# Policy propagation: accounts per UPDATE batch, and how long a worker holds a propagation before
# beat may hand it to another (renewed after every batch).
SENDGATE_POLICY_BATCH_SIZE = env.int("SENDGATE_POLICY_BATCH_SIZE", default=5000)
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
SENDGATE_SUBMISSION_MAX_RECIPIENTS = env.int("SENDGATE_SUBMISSION_MAX_RECIPIENTS", default=100)
# Messages one account may submit in any 24 hours (SMTP, sendmail and compose together).
SENDGATE_DAILY_MESSAGE_LIMIT = env.int("SENDGATE_DAILY_MESSAGE_LIMIT", default=2000)
# Login throttling: this many failures within the window from one IP address, or for one login
# name, lock further attempts from it until the window has passed; each failure is answered late.
SENDGATE_AUTH_MAX_FAILURES = env.int("SENDGATE_AUTH_MAX_FAILURES", default=10)
SENDGATE_AUTH_FAILURE_WINDOW_MINUTES = env.int("SENDGATE_AUTH_FAILURE_WINDOW_MINUTES", default=15)
SENDGATE_AUTH_FAILURE_DELAY = env.float("SENDGATE_AUTH_FAILURE_DELAY", default=1.0)
