"""Settings for the Defender ATP integrations console, read strictly from the environment.

See the configuration table in README.md. Every variable may also be given as NAME_FILE=/path.
"""

from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from integrations_site import env, log_config, private_files

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env.read("VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env.boolean("DEBUG", default=True)

GENERATE_HINTS = {
    "SECRET_KEY": 'python -c "import secrets; print(secrets.token_urlsafe(50))"',
    "FIELD_ENCRYPTION_KEYS": (
        'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
    ),
}


def _required_secret(name):
    value = env.read(name)
    if value:
        return value
    if not DEBUG:
        raise ImproperlyConfigured(
            f"{name} is not set and DEBUG is off. Set {name} (or {name}_FILE) to a new value, generated with: "
            f"{GENERATE_HINTS[name]}"
        )
    from integrations_site.dev_secrets import load_or_create

    return load_or_create(VAR_DIR)[name]


def _at_least(name, value, low):
    if value < low:
        raise ImproperlyConfigured(f"{name} must be at least {low}, not {value}.")
    return value


SECRET_KEY = _required_secret("SECRET_KEY")
# The first key encrypts; every key decrypts. Rotate by putting a new key first and running rotate_encryption_key.
FIELD_ENCRYPTION_KEYS = [key.strip() for key in _required_secret("FIELD_ENCRYPTION_KEYS").split(",") if key.strip()]

ALLOWED_HOSTS = env.string_list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.string_list("CSRF_TRUSTED_ORIGINS")
# The site's public URL as remote nodes reach it, for the agent command shown when a node is added (else the URL the
# browser used).
SITE_URL = env.read("SITE_URL", "").rstrip("/")
# Remote jobs: how long a job waits for its node to claim it, and how long a node may hold it before it is re-queued.
REMOTE_JOB_DEADLINE_SECONDS = env.integer("REMOTE_JOB_DEADLINE_SECONDS", 90)
REMOTE_JOB_LEASE_SECONDS = env.integer("REMOTE_JOB_LEASE_SECONDS", 300)
REMOTE_NODE_MAX_RESULT_BYTES = env.integer("REMOTE_NODE_MAX_RESULT_BYTES", 64 * 1024 * 1024)
# The background engine (Celery). With no broker configured, the embedded default: kombu's filesystem transport in
# var/, which needs no server (one machine; `make demo` starts a worker and the scheduler beside the site). Set
# CELERY_BROKER_URL=redis://host:6379/0 for workers on any number of machines.
CELERY_BROKER_URL = env.read("CELERY_BROKER_URL", "") or "filesystem://"
if CELERY_BROKER_URL == "filesystem://":
    _queue_folder = VAR_DIR / "celery" / "queue"
    private_files.private_folder(_queue_folder)
    _control_folder = VAR_DIR / "celery" / "control"
    private_files.private_folder(_control_folder)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_folder),
        "data_folder_out": str(_queue_folder),
        # Where kombu keeps its exchange tables: else a folder named "control" in whatever directory a process
        # started in.
        "control_folder": str(_control_folder),
        "store_processed": False,
        # How often an idle worker looks for a message: a pressed Test starts well within a second.
        "polling_interval": 0.1,
    }
else:
    # A task whose worker died unacknowledged goes to another worker after this long; longer than any task's
    # time limit, so that a slow task is never run twice while it is still running.
    _visibility_timeout = _at_least("CELERY_VISIBILITY_TIMEOUT", env.integer("CELERY_VISIBILITY_TIMEOUT", 3600), 10)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": _visibility_timeout,
        # Workers look for such tasks every interval x throttle seconds (kombu's default: 10 x 10 = 100 s): a tenth
        # of the timeout here, so that a lost task runs again soon after its timeout, whatever the timeout.
        "unacked_restore_interval": max(1, _visibility_timeout // 100),
        "unacked_restore_throttle": 10,
    }
# The call budget per app and tenant shared by every worker (defender/services/budget.py): counted in this Redis, else
# in the broker's when it is Redis, else in each process.
CALL_BUDGET_REDIS_URL = env.read("CALL_BUDGET_REDIS_URL", "")
# How long a call waits for a slot of a spent budget before it fails saying when the budget frees.
CALL_BUDGET_WAIT_SECONDS = _at_least("CALL_BUDGET_WAIT_SECONDS", env.integer("CALL_BUDGET_WAIT_SECONDS", 60), 0)
# No result backend: every task records its outcome in the database, where the pages read it.
CELERY_TASK_IGNORE_RESULT = True
# Acknowledged when done, not when received: a task whose worker is killed mid-way runs again on another worker.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One message at a time per process, so that a long Test never holds back the tasks queued behind it.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# Schedules live in the database (django-celery-beat), editable in the Django admin.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "Remote job housekeeping": {
        "task": "defender.tasks.remote_job_housekeeping",
        "schedule": env.integer("REMOTE_JOB_HOUSEKEEPING_SECONDS", 10),
    },
    # Pending procedures are evaluated again until their detection windows close.
    "Evaluate pending outcomes": {
        "task": "defender.tasks.evaluate_outcomes",
        "schedule": env.integer("OUTCOME_EVALUATION_SECONDS", 300),
    },
}
# On, a task runs before the request that queued it returns (for tests that run inside one database transaction,
# which a worker cannot see); off on the site.
TASKS_RUN_INLINE = env.boolean("TASKS_RUN_INLINE", default=False)
# Link-local and cloud metadata addresses hand out the machine's own credentials: a Test never reaches them unless
# this is on (defender/services/addresses.py).
ALLOW_METADATA_HOSTS = env.boolean("ALLOW_METADATA_HOSTS", default=False)


INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "crispy_forms",
    "crispy_bootstrap5",
    "django_tables2",
    "django_filters",
    "django_htmx",
    "axes",
    "csp",
    "django_celery_beat",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "defender",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files straight after the security headers: served before the session, the login requirement and the
    # no-store header, which pages need and hashed, public assets do not.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page requires a signed-in user unless its view is marked login_not_required.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Pages show integrations, alerts and tokens: no browser or proxy cache keeps them.
    "integrations_site.middleware.NoStoreMiddleware",
    "integrations_site.middleware.SlidingSessionMiddleware",
    # Last, so it turns a lockout flagged during the login view into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "integrations_site.urls"

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
            ],
        },
    },
]

WSGI_APPLICATION = "integrations_site.wsgi.application"

_database_url = env.read("DATABASE_URL")  # lower case: never listed among the settings on an error page
if _database_url is None:
    # The development database lives in var/, which only this user may enter (the file itself is made 0600 when
    # SQLite creates it: integrations_site/private_files.py).
    private_files.private_folder(VAR_DIR)
DATABASES = {
    "default": dj_database_url.parse(
        _database_url or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=env.integer("DATABASE_CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # PostgreSQL compiles a query to machine code once its estimated cost is high, which pays off for long analytical
    # queries and not for a page's: on an actor with 100,000 alerts, compiling the window's count took 25 ms of 65.
    # Off for this site's connections only, unless DATABASE_URL's options say otherwise.
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    if "jit" not in _options.get("options", ""):
        _options["options"] = f"{_options.get('options', '')} -c jit=off".strip()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "defender:integration-list"
LOGOUT_REDIRECT_URL = "login"
# Axes checks every login (the console's and /admin/login/) before the password is; see README, Logins.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = _at_least("LOGIN_FAILURE_LIMIT", env.integer("LOGIN_FAILURE_LIMIT", 5), 1)
AXES_COOLOFF_TIME = timedelta(minutes=_at_least("LOGIN_COOLOFF_MINUTES", env.integer("LOGIN_COOLOFF_MINUTES", 15), 1))
# A user name is locked from the address that failed, so nobody can lock an administrator out from elsewhere.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The cool-off runs from the failure that locked: attempts while locked neither count nor prolong it.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "defender.logins.lockout_response"
AXES_CLIENT_IP_CALLABLE = "defender.logins.client_address"
# Reverse proxies in front of the site that append the client's address to X-Forwarded-For (0: none, use the
# connection's address).
TRUSTED_PROXY_COUNT = _at_least("TRUSTED_PROXY_COUNT", env.integer("TRUSTED_PROXY_COUNT", 0), 0)

# Sessions end after this many seconds without a request (sliding; refreshed at most once a minute).
SESSION_IDLE_TIMEOUT = _at_least("SESSION_IDLE_TIMEOUT", env.integer("SESSION_IDLE_TIMEOUT", 8 * 60 * 60), 60)
SESSION_COOKIE_AGE = SESSION_IDLE_TIMEOUT

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.read("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.read("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
NODE_MODULES = BASE_DIR / "node_modules"
# Third-party assets come from the npm registry at install time and are served from here, never from a CDN.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/bootstrap", NODE_MODULES / "bootstrap" / "dist"),
    ("vendor/bootstrap-icons", NODE_MODULES / "bootstrap-icons" / "font"),
    ("vendor/htmx", NODE_MODULES / "htmx.org" / "dist"),
]

# collectstatic gives every file a name with its content's hash (and a gzipped copy) and whitenoise serves it, with
# DEBUG off, from STATIC_ROOT with a year's Cache-Control: a new release has new names. The test suite uses Django's
# plain storage instead (tests/conftest.py), so that it needs no collectstatic.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"
DJANGO_TABLES2_TEMPLATE = "django_tables2/bootstrap5-responsive.html"

# HTTPS often ends at a reverse proxy, which tells the site in X-Forwarded-Proto. Any client can send that header
# too, so it is believed only when the operator says a proxy in front of every request sets it (replacing what the
# client sent): otherwise a plain-HTTP request calling itself https would skip the redirect and get secure cookies.
TRUSTED_PROXY_SETS_X_FORWARDED_PROTO = env.boolean("TRUSTED_PROXY_SETS_X_FORWARDED_PROTO", default=False)
if TRUSTED_PROXY_SETS_X_FORWARDED_PROTO:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Production hardening: HTTPS is assumed (at the site, or at a trusted proxy as above).
if not DEBUG:
    SECURE_SSL_REDIRECT = env.boolean("SECURE_SSL_REDIRECT", default=True)
    # Load balancers and orchestrators probe over plain HTTP, often straight to the process: answered, not redirected.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.integer("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.boolean("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.boolean("SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# Only the site's own scripts and styles: no inline script, no style attribute, nothing from elsewhere. Bootstrap's
# stylesheet draws its form controls with data: SVG images.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# The REST API: a user's API token (or the console's session), the user's group deciding what it may do.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "defender.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Defender ATP integrations console API",
    "DESCRIPTION": "Actors, their stored Defender alerts, executions of attack procedures with their outcomes, and "
    "coverage as an ATT&CK Navigator layer. Authenticate with `Authorization: Bearer <API token>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Like every page of the site, the schema and its docs are for signed-in users (or a token).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"OutcomeEnum": "defender.models.Outcome"},
}

# Health notifications by email (Django's mail). With DEBUG on and no EMAIL_BACKEND, mail is printed to the console.
EMAIL_BACKEND = env.read(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env.read("EMAIL_HOST", "localhost")
EMAIL_PORT = env.integer("EMAIL_PORT", 25)
EMAIL_HOST_USER = env.read("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env.read("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env.boolean("EMAIL_USE_TLS", default=False)
# A notification must not hold a worker for long when the mail server does not answer.
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env.read("DEFAULT_FROM_EMAIL", "defender-console@localhost")

# Every handler masks secrets and tokens, whichever library logs them (integrations_site/log_config.py).
LOGGING = log_config.logging_config(env.read("LOG_LEVEL", "INFO"))
