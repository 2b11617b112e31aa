"""Settings for a remote node's agent (``manage.py run_remote_node``): no database, no site keys.

The agent only runs the services on jobs the site hands it; it reads nothing from a database and signs nothing, so it
starts on a node that has a checkout of this project and nothing else configured.
"""

from typing import Any

from integrations_site import env, log_config

DEBUG = False
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "defender"]
DATABASES: dict[str, dict[str, Any]] = {}
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = log_config.logging_config(env.read("LOG_LEVEL", "INFO"))
# As on the site: a Test run on the node refuses link-local and cloud metadata addresses unless this is on.
ALLOW_METADATA_HOSTS = env.boolean("ALLOW_METADATA_HOSTS", default=False)
# The call budget of the node's own calls: in this Redis when set (several agents on the node share it), else in the
# agent's process.
CALL_BUDGET_REDIS_URL = env.read("CALL_BUDGET_REDIS_URL", "")
CALL_BUDGET_WAIT_SECONDS = env.integer("CALL_BUDGET_WAIT_SECONDS", 60)
