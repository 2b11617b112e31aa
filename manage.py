#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    # A remote node's agent runs without the site's database or keys: it gets settings of its own.
    agent = sys.argv[1:2] == ["run_remote_node"]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", f"integrations_site.{'agent_settings' if agent else 'settings'}")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
