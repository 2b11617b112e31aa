"""The agent that runs on a remote node: check in with the site, run the jobs it hands out, post the answers.

It needs no database and keeps no secret on disk: a job's settings (client secret included) live in memory while the
job runs and are never logged. All HTTP goes through the services' HTTP seam, like every other call.
"""

import gzip
import json
import logging
import random
import signal
import threading
from urllib.parse import urlsplit

from defender.remote import wire
from defender.services import client
from defender.services.connection import ConnectionSettings
from defender.services.errors import DefenderError

logger = logging.getLogger("defender.remote.agent")

AGENT_VERSION = "1.0"
CHECK_IN_WAIT = 20  # seconds the site may hold a check-in open while it waits for a job
MAX_BACKOFF = 60
GZIP_ABOVE = 64 * 1024


class TokenRefused(Exception):
    """The site answered 401: the token is unknown or revoked."""


class _Stop(BaseException):
    """Raised by the signal handler to leave a check-in that is only waiting."""


def site_settings(site_url, ca_pem="", verify=True):
    """Connection settings for the site itself, so the agent's calls take the same HTTP seam as Defender's."""
    parts = urlsplit(site_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"--site must be a URL such as https://director.example.com, not {site_url!r}.")
    return ConnectionSettings(
        flavour="site",
        host=parts.hostname,
        port=parts.port or (443 if parts.scheme == "https" else 80),
        protocol=parts.scheme,
        client_id="",
        tenant_id="",
        auth_url="",
        ca_certificate=ca_pem,
        verify_tls=verify,
        connect_timeout=10.0,
        read_timeout=CHECK_IN_WAIT + 15.0,
        name="the Director site",
    )


class Agent:
    def __init__(self, site_url, token, *, ca_pem="", verify=True, wait=CHECK_IN_WAIT, once=False):
        self.base = site_url.rstrip("/")
        # Before any session exists: every call from this process, to the site or to Defender, says it is a node.
        client.identify_as(f"defender-atp-director/{AGENT_VERSION} (remote node)")
        self.transport = client.Transport(site_settings(site_url, ca_pem, verify))
        self._authorization = {"Authorization": f"Bearer {token}"}
        self.wait = wait
        self.once = once
        self.stopping = threading.Event()
        self.waiting = False  # inside a check-in, waiting for work: the only moment a signal may cut in

    def __repr__(self):
        return f"<Agent for {self.base}>"

    # --- the loop ---------------------------------------------------------------------------------------------

    def run(self):
        """Work until SIGTERM/SIGINT (exit 0) or until the site refuses the token (exit 2)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        logger.info("Remote node agent %s checking in with %s", AGENT_VERSION, self.base)
        failures = 0
        try:
            while not self.stopping.is_set():
                try:
                    job = self.check_in()
                except TokenRefused:
                    logger.error(
                        "The site refused this node's token (unknown or revoked). Issue a new token on the node's "
                        "page in Settings > Remote Nodes and restart the agent with it."
                    )
                    return 2
                except DefenderError as error:
                    failures += 1
                    delay = min(MAX_BACKOFF, 2 ** min(failures, 6)) * random.uniform(0.5, 1.0)
                    logger.warning("Cannot reach the site (%s); trying again in %.0f s", error.message, delay)
                    self.stopping.wait(delay)
                    continue
                failures = 0
                if job is not None and self.stopping.is_set():
                    # Asked to stop as the job arrived: hand it back so another agent runs it now, not after a lease.
                    self.give_back(job)
                elif job is not None:
                    try:
                        self.run_job(job)
                    except TokenRefused:
                        logger.error("The site refused this node's token while it answered a job; stopping.")
                        return 2
                if self.once:
                    break
        except _Stop:
            pass
        logger.info("Remote node agent stopped")
        return 0

    def _on_signal(self, signum, frame):
        self.stopping.set()
        if self.waiting:
            # Only waiting for work: leave at once. A job in hand is finished and answered first; one that arrives
            # after the signal is given back.
            raise _Stop

    # --- talking to the site ----------------------------------------------------------------------------------

    def _post(self, path, body):
        data = json.dumps(body).encode()
        headers = {**self._authorization, "Content-Type": "application/json"}
        if len(data) > GZIP_ABOVE:
            data = gzip.compress(data, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        response = self.transport.send("POST", f"{self.base}{path}", data=data, headers=headers)
        if response.status_code == 401:
            raise TokenRefused
        return response

    def check_in(self):
        self.waiting = True
        try:
            response = self._post("/api/nodes/check-in/", {"agent_version": AGENT_VERSION, "wait": self.wait})
        finally:
            self.waiting = False
        if response.status_code != 200:
            raise DefenderError(f"the site answered {response.status_code} to a check-in")
        return response.json().get("job")

    def run_job(self, job):
        logger.info("Running job %s: %s of %s", job["id"], job["kind"], job["integration"]["name"])
        try:
            ok, result, error = wire.run_job(job["kind"], job["settings"], job["parameters"])
        except Exception as exc:
            # One broken job must not stop the node: say so to the site, which shows it to the person waiting.
            logger.exception("Job %s failed in the agent", job["id"])
            ok, result = False, None
            error = f"The agent on this node failed while running the job ({type(exc).__name__}); see its log."
        self._answer(job["id"], {"ok": ok, "result": result, "error": error})

    def give_back(self, job):
        try:
            self._post(f"/api/nodes/jobs/{job['id']}/give-back/", {})
            logger.info("Gave job %s back to the site", job["id"])
        except (DefenderError, TokenRefused):
            logger.warning("Could not give job %s back; the site will run it again after its lease", job["id"])

    def _answer(self, job_id, body):
        """Post the answer, trying again a few times if the site is briefly away (the lease gives us time)."""
        for attempt in range(5):
            try:
                response = self._post(f"/api/nodes/jobs/{job_id}/answer/", body)
            except DefenderError as error:
                logger.warning("Could not post the answer to job %s (%s); retrying", job_id, error.message)
                self.stopping.wait(2**attempt)
                continue
            if response.status_code >= 500:
                logger.warning("The site answered %s to job %s's answer; retrying", response.status_code, job_id)
                self.stopping.wait(2**attempt)
                continue
            if response.status_code == 200:
                logger.info("Answered job %s: %s", job_id, "ok" if body["ok"] else "failed")
            elif response.status_code == 409:
                logger.warning(
                    "Job %s is no longer this node's (re-queued or answered meanwhile); answer dropped", job_id
                )
            else:
                logger.error(
                    "The site answered %s to job %s's answer: %s", response.status_code, job_id, _reason(response)
                )
            return
        logger.error("Gave up posting the answer to job %s; the site will run it again after its lease", job_id)


def _reason(response):
    try:
        return str(response.json().get("error", ""))[:200]
    except ValueError:
        return ""
