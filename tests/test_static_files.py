"""With DEBUG off (as the suite runs) and after collectstatic with the site's own storage, pages link the static
files by their hashed names and whitenoise serves them, with a year's caching, before any login is asked for."""

import re

from django.core.management import call_command
from django.test import Client

SITE_STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}


def test_collected_stylesheets_are_served_by_whitenoise_with_long_caching(db, settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "static"
    settings.STORAGES = SITE_STORAGES
    call_command("collectstatic", interactive=False, verbosity=0)
    client = Client()  # its middleware, whitenoise's included, is built now: after collectstatic

    login_page = client.get("/accounts/login/").content.decode()
    [stylesheet] = re.findall(r'href="(/static/css/console\.[0-9a-f]{12}\.css)"', login_page)
    response = client.get(stylesheet)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    assert "max-age=315360000" in response["Cache-Control"] and "immutable" in response["Cache-Control"]
    # Served before the session and the no-store header every page gets.
    assert "Set-Cookie" not in response.headers
    assert "no-store" not in response["Cache-Control"]
    assert b"".join(response.streaming_content).strip()
