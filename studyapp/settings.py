"""Settings, read from the environment (12-factor, via django-environ).

Nothing set: a zero-setup laptop mode (SQLite under ``var/``, Celery tasks run in
the calling process) so that ``make demo`` needs no services.  With ``DATABASE_URL``
and ``CELERY_BROKER_URL`` set: PostgreSQL through psycopg 3 and Redis as broker and
result backend.

Safe by default: ``DEBUG`` is on only when set (``manage.py runserver`` sets it), the
secret key is the install's own (``var/secret_key``) unless ``SECRET_KEY`` is given, and
an install served under host names of its own (``ALLOWED_HOSTS`` set) gets the HTTPS
hardening that ``manage.py check --deploy`` asks for (``PRODUCTION``, which may also be
set either way).
"""

import warnings
from pathlib import Path

import csp.constants as csp
import environ

from studyapp.secret_key import secret_key_of_install

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()

# Debug pages show settings, paths and code to whoever triggers an error: never by default.
DEBUG = env.bool("DEBUG", default=False)
# Given host names, the install is reachable under them: HTTPS-only cookies, HSTS, redirect.
# Unset, only the loopback names answer (a laptop, the tests' own servers) over plain HTTP.
PRODUCTION = env.bool("PRODUCTION", default=bool(env.str("ALLOWED_HOSTS", default="")))
# Per install, never a constant: with a public key anyone could forge sessions and tickets.
# More than one machine serving the same site must share one: set SECRET_KEY then.
SECRET_KEY = env.str("SECRET_KEY", default="") or secret_key_of_install(VAR_DIR / "secret_key")

ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=[] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "studyapp",
    "studyapp.studies",
    "studyapp.rating",
]

MIDDLEWARE = [
    # Outermost, so that every response carries the policy, the error pages below included.
    "csp.middleware.CSPMiddleware",
    # Rater URLs get the project's own error pages even with DEBUG on (errors.py).
    "studyapp.errors.RaterErrorPagesMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # NUL in the query, oversized anonymous bodies: refused before any view reads them.
    "studyapp.guards.RequestGuardsMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its lockout page.
    "axes.middleware.AxesMiddleware",
]

# --- Content-Security-Policy (django-csp) ---------------------------------------------------
# Scripts only from the site's own static files or inline with the response's nonce
# (templates: <script nonce="{{ request.csp_nonce }}">), so text that slipped into a page
# cannot run. Styles may be inline (the pages' own <style> blocks, Django's admin).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        "script-src": [csp.SELF, csp.NONCE],
        "style-src": [csp.SELF, csp.UNSAFE_INLINE],
        "img-src": [csp.SELF, "data:"],
        "connect-src": [csp.SELF],
        "form-action": [csp.SELF],
        "frame-ancestors": [csp.SELF],
        "base-uri": [csp.SELF],
        "object-src": [csp.NONE],
    }
}

ROOT_URLCONF = "studyapp.urls"

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
                "studyapp.rating.context.heartbeat",
            ],
        },
    },
]

WSGI_APPLICATION = "studyapp.wsgi.application"
ASGI_APPLICATION = "studyapp.asgi.application"

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
# Rater pages are short requests; persistent connections save a connect per request.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The zero-setup default must hold concurrent raters. IMMEDIATE: a transaction takes the
    # write lock when it begins, so two slot claims queue instead of one failing with
    # "database is locked" when it upgrades a read lock; timeout: how long a writer waits
    # for the lock (seconds); WAL: readers never wait for the writer.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": env.float("SQLITE_BUSY_TIMEOUT", default=20.0),
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Login throttling (django-axes) ------------------------------------------------------
# AxesStandaloneBackend first: it refuses a login from a locked-out client before the password
# is checked. Failures are kept in the database (Access attempts in the admin, superusers
# only); deleting an attempt there, or `manage.py axes_reset`, lifts the lockout.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=1.0)  # hours; the lockout then lifts itself
# Per client address (an IPv6 /64, as the entry limit counts): a username alone would let
# anyone lock a researcher out from anywhere.
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_CLIENT_IP_CALLABLE = "studyapp.addresses.request_client_network"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"
AXES_VERBOSE = False  # no banner on every start of every command

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
if not PRODUCTION:
    # Outside production the static files are served from the apps (no collectstatic, so no
    # STATIC_ROOT): WhiteNoise's warning about the missing folder is noise there (e.g. in
    # `make demo`'s output). In production `make serve` collects them and the warning stays on.
    warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

LOGIN_URL = "admin:login"
CSRF_FAILURE_VIEW = "studyapp.errors.csrf_failure"

# A POST from someone not logged in (a rater page, the login form) carries a few kB; a larger
# one is refused before its body is read (studyapp/guards.py).
ANONYMOUS_POST_MAX_BYTES = env.int("ANONYMOUS_POST_MAX_BYTES", default=128 * 1024)

# --- Cache (entry rate limits) ----------------------------------------------------------
# CACHE_URL (e.g. redis://127.0.0.1:6379/1): Redis. Unset: a table in the platform's own
# database (created by migrate), so the zero-setup default limits entries too.
CACHES = {
    "default": (
        env.cache_url("CACHE_URL")
        if env.str("CACHE_URL", default="")
        else {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "django_cache",
            # Over MAX_ENTRIES the table is culled (a third of it, whatever it is), which
            # would forget entry tokens: far above the live keys of a study (two per address
            # and hour, up to the limit's number for a busy one).
            "OPTIONS": {"MAX_ENTRIES": 1_000_000},
        }
    )
}
# New participations one IP address may start per hour (a resume never counts). Raters of
# one university or household can share an address: keep it well above one.
ENTRY_RATE_LIMIT_PER_HOUR = env.int("ENTRY_RATE_LIMIT_PER_HOUR", default=20)
# Behind a reverse proxy, the client address is the last one the proxy appended to
# X-Forwarded-For; without one (default) REMOTE_ADDR, which a client cannot forge.
USE_X_FORWARDED_FOR = env.bool("USE_X_FORWARDED_FOR", default=False)
# How often an open rater page tells the server the rater is still there (seconds); it must
# stay well below every study's slot_hold_minutes.
RATER_HEARTBEAT_SECONDS = env.int("RATER_HEARTBEAT_SECONDS", default=60)

# --- Celery -------------------------------------------------------------------------
# No broker configured: run tasks in the calling process (the zero-setup demo mode).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=CELERY_BROKER_URL or None)
if CELERY_TASK_ALWAYS_EAGER:
    # Never connected to (tasks run in-process); an empty URL would make kombu complain.
    CELERY_BROKER_URL = "memory://localhost/"
CELERY_TASK_DEFAULT_QUEUE = "default"
# Heavy model work goes to its own queue so that one slow generation job never delays
# the short bookkeeping tasks; a generation worker runs one task at a time.
CELERY_TASK_ROUTES = {
    "studyapp.*.tasks.generation_*": {"queue": "generation"},
}
# acks_late + reject_on_worker_lost: a task whose worker dies is delivered again, which
# is safe because every task is idempotent. prefetch 1: a long job never hoards others.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TRACK_STARTED = True
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Run by `celery beat` (`make worker` embeds it); exactly one beat process per deployment.
CELERY_BEAT_SCHEDULE = {
    "release-stale-rater-slots": {
        "task": "studyapp.rating.tasks.slots_release_stale_task",
        "schedule": env.float("STALE_SLOT_SWEEP_SECONDS", default=300.0),
    },
}
# How long Redis keeps an unacknowledged task before handing it to another worker; it
# must exceed the longest job, or a job still running is delivered twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=6 * 3600),
}
if env.str("CELERY_BROKER_KEYPREFIX", default=""):
    # Lets concurrent test runs share one Redis without stealing each other's tasks.
    CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = env.str("CELERY_BROKER_KEYPREFIX")

# --- Models -------------------------------------------------------------------------
# The libraries read their own model locations from the environment, so that a notebook,
# the CLI and a worker agree: MODEL_CACHE_DIR (generation/embedded.py) and
# EMBEDDING_MODEL_PATH (analysis/embeddings.py). Steering artifacts are the platform's:
ARTIFACT_DIR = env.path("ARTIFACT_DIR", default=VAR_DIR / "artifacts")
# Where a spec's paths may point (studies/paths.py): a researcher's path elsewhere is refused
# at spec load, admin save and job start, before anything is opened. A study's artifacts lie
# under ARTIFACT_DIR/<its slug>. The defaults hold the embedded model's cache, the shipped
# task and prompt files and the paper's spec (/models).
MODEL_ROOTS = [
    Path(p)
    for p in env.list("MODEL_ROOTS", default=[env.str("MODEL_CACHE_DIR", default=str(VAR_DIR / "models")), "/models"])
]
DATA_ROOTS = [
    Path(p)
    for p in env.list(
        "DATA_ROOTS", default=[str(VAR_DIR / "data"), str(BASE_DIR / "generation"), str(BASE_DIR / "studies")]
    )
]

# --- Production hardening (what ``check --deploy`` asks for) ------------------------
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
    SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
