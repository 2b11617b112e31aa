"""Run a remote node's agent: check in with the site over HTTPS, run the jobs of its integrations, post the answers.

    REMOTE_NODE_TOKEN_FILE=/etc/director/node-token python manage.py run_remote_node --site https://director.example.com

The token comes from --token-file or the REMOTE_NODE_TOKEN (or REMOTE_NODE_TOKEN_FILE) environment variable, never
from the command line, where other users of the machine could read it.
"""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from defender.remote.agent import Agent
from integrations_site import env


class Command(BaseCommand):
    help = "Run this machine as a remote node: pull jobs of its integrations from the site and answer them."
    requires_system_checks = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("--site", required=True, help="The site's URL, e.g. https://director.example.com")
        parser.add_argument("--token-file", help="File holding the node's access token (else REMOTE_NODE_TOKEN).")
        parser.add_argument("--ca-file", help="PEM of the CA that signed the site's certificate, if not public.")
        parser.add_argument(
            "--insecure-skip-verify", action="store_true", help="Do not verify the site's certificate (testing only)."
        )
        parser.add_argument(
            "--allow-insecure-http",
            action="store_true",
            help="Accept an http:// --site (a development site only: the token and client secrets travel unencrypted).",
        )
        parser.add_argument("--once", action="store_true", help="Check in once, run what comes, and exit.")
        parser.add_argument("--wait", type=int, default=20, help="Seconds each check-in may wait for work.")

    def handle(
        self, *args, site, token_file, ca_file, insecure_skip_verify, allow_insecure_http, once, wait, **options
    ):
        token = self.read_token(token_file)
        ca_pem = ""
        if ca_file:
            try:
                ca_pem = Path(ca_file).read_text()
            except OSError as exc:
                raise CommandError(f"Cannot read --ca-file {ca_file}: {exc.strerror}.") from exc
        try:
            agent = Agent(
                site,
                token,
                ca_pem=ca_pem,
                verify=not insecure_skip_verify,
                wait=wait,
                once=once,
                allow_insecure_http=allow_insecure_http,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        exit_code = agent.run()
        if exit_code:
            sys.exit(exit_code)

    def read_token(self, token_file):
        if token_file:
            try:
                token = Path(token_file).read_text().strip()
            except OSError as exc:
                raise CommandError(f"Cannot read --token-file {token_file}: {exc.strerror}.") from exc
        else:
            token = (env.read("REMOTE_NODE_TOKEN") or "").strip()
        if not token:
            raise CommandError("No token: pass --token-file PATH or set REMOTE_NODE_TOKEN (see the node's page).")
        return token
