"""Settings for the Defender ATP integrations console, read strictly from the environment.

See the configuration table in README.md. Every variable may also be given as NAME_FILE=/path.
"""

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from integrations_site import env, log_config

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
    "defender",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page requires a signed-in user unless its view is marked login_not_required.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
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

DATABASES = {
    "default": dj_database_url.parse(
        env.read("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=env.integer("DATABASE_CONN_MAX_AGE", 60),
    )
}
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

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"
DJANGO_TABLES2_TEMPLATE = "django_tables2/bootstrap5-responsive.html"

# Production hardening: HTTPS is assumed, terminated by a reverse proxy that sets X-Forwarded-Proto.
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.boolean("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.integer("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.boolean("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.boolean("SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# Every handler masks secrets and tokens, whichever library logs them (integrations_site/log_config.py).
LOGGING = log_config.logging_config(env.read("LOG_LEVEL", "INFO"))
