"""The agent that runs on a remote node: check in with the site, run the jobs it hands out, post the answers.

It needs no database and keeps no secret on disk: a job's settings (client secret included) live in memory while the
job runs and are never logged. All HTTP goes through the services' HTTP seam, like every other call.
"""

import gzip
import json
import logging
import random
import secrets
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from defender.remote import wire
from defender.services.connection import ProxySettings, target
from defender.services.errors import DefenderError
from defender.services.process import PROCESS
from defender.services.transport import Response, Transport

logger = logging.getLogger("defender.remote.agent")

AGENT_VERSION = wire.AGENT_VERSION  # the version of the wire format it speaks
CHECK_IN_WAIT = 20  # seconds the site may hold a check-in open while it waits for a job
MAX_BACKOFF = 60
GZIP_ABOVE = 64 * 1024
CHECK_IN = "/api/nodes/check-in/"


class TokenRefused(Exception):
    """The site answered 401: the token is unknown or revoked."""


class _Stop(BaseException):
    """Raised by the signal handler to leave a check-in that is only waiting."""


Job = dict[str, Any]


@dataclass(frozen=True)
class SiteSettings:
    """How this node reaches its site: the address, whom to trust, how long to wait, a proxy rule if any (without one,
    the environment's proxy applies, as for every call), and how the node's calls introduce themselves."""

    url: str
    ca_certificate: str = field(default="", repr=False)
    verify_tls: bool = True
    connect_timeout: float = 10.0
    read_timeout: float = CHECK_IN_WAIT + 15.0
    proxy: ProxySettings | None = None
    user_agent: str = f"defender-atp-director/{AGENT_VERSION} (remote node)"

    def answered_by(self, url: str) -> tuple[str, str]:
        return f"The site at {target(url)}", "Use the site's own address for --site, not one that forwards to it."


def site_settings(
    site_url: str, ca_pem: str = "", verify: bool = True, allow_insecure_http: bool = False
) -> SiteSettings:
    """How to reach the site at site_url; refuses what is not an http(s) URL, and plain HTTP unless allowed."""
    parts = urlsplit(site_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"--site must be a URL such as https://director.example.com, not {site_url!r}.")
    if parts.scheme == "http" and not allow_insecure_http:
        raise ValueError(
            f"--site {site_url} is plain HTTP: this node's token and the client secret of every job would cross the "
            "network unencrypted. Use the site's https:// URL, or add --allow-insecure-http for a development site."
        )
    return SiteSettings(site_url.rstrip("/"), ca_certificate=ca_pem, verify_tls=verify)


class Agent:
    def __init__(
        self,
        site_url: str,
        token: str,
        *,
        ca_pem: str = "",
        verify: bool = True,
        wait: int = CHECK_IN_WAIT,
        once: bool = False,
        allow_insecure_http: bool = False,
    ) -> None:
        self.site = site_settings(site_url, ca_pem, verify, allow_insecure_http)
        self.base = self.site.url
        # Every call from this process, to the site or to Defender, says it is a node.
        PROCESS.user_agent = self.site.user_agent
        self.transport = Transport(self.site)
        self.insecure = urlsplit(self.base).scheme == "http"
        self._authorization = {"Authorization": f"Bearer {token}"}
        self.wait = wait
        self.once = once
        # Several agents may share the node's token; the site keeps track of which one holds which job.
        self.agent_id = secrets.token_hex(8)
        self.stopping = threading.Event()
        self.waiting = False  # inside a check-in, waiting for work: the only moment a signal may cut in
        # The site may think this agent holds a job it does not: a claim whose answer did not arrive, a job it could
        # neither answer nor give back. The next check-in settles that; on the way out, one last check-in does.
        self.unsettled = False

    def __repr__(self) -> str:
        return f"<Agent for {self.base}>"

    # --- the loop ---------------------------------------------------------------------------------------------

    def run(self) -> int:
        """Work until SIGTERM/SIGINT (exit 0) or until the site refuses the token (exit 2)."""
        previous = {signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self._work()
        finally:
            for signum, handler in previous.items():
                if handler is not None:
                    signal.signal(signum, handler)

    def _work(self) -> int:
        logger.info("Remote node agent %s checking in with %s", AGENT_VERSION, self.base)
        if self.insecure:
            logger.warning(
                "Talking to the site over plain HTTP (--allow-insecure-http): the token and client secrets travel "
                "unencrypted. Use this only for a development site."
            )
        failures = 0
        try:
            while not self.stopping.is_set():
                try:
                    work = self.check_in()
                    job = self.claim() if work and not self.stopping.is_set() else None
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
        if self.unsettled:
            self.settle()
        logger.info("Remote node agent stopped")
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping.set()
        if self.waiting:
            # Only waiting for work: leave at once (a check-in never hands out a job, so nothing is lost). A job in
            # hand is finished and answered first; one whose claim is being answered is given back.
            raise _Stop

    # --- talking to the site ----------------------------------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any]) -> Response:
        data = json.dumps(body).encode()
        headers = {**self._authorization, "Content-Type": "application/json"}
        if len(data) > GZIP_ABOVE:
            data = gzip.compress(data, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        response = self.transport.send("POST", f"{self.base}{path}", data=data, headers=headers)
        if response.status_code == 401:
            raise TokenRefused
        return response

    def _check_in_body(self, wait: int) -> dict[str, Any]:
        # This agent runs one job at a time and checks in only between jobs: it holds none.
        return {"agent_version": AGENT_VERSION, "agent_id": self.agent_id, "wait": wait, "holding": []}

    def check_in(self) -> bool:
        """Wait (up to ``wait`` seconds) until a job is waiting; True if one is."""
        self.waiting = True
        try:
            response = self._post(CHECK_IN, self._check_in_body(self.wait))
        finally:
            self.waiting = False
        if response.status_code != 200:
            raise DefenderError(f"the site answered {response.status_code} to a check-in")
        self.unsettled = False
        return bool(_json(response).get("work"))

    def claim(self) -> Job | None:
        """Take the next job; None if another agent was quicker. Signals wait until its answer is read."""
        self.unsettled = True
        response = self._post("/api/nodes/claim/", {"agent_id": self.agent_id})
        if response.status_code != 200:
            raise DefenderError(f"the site answered {response.status_code} to a claim")
        job = _json(response).get("job")
        self.unsettled = False
        return job

    def settle(self) -> None:
        """Tell the site this agent holds no job, so a claim it may have made without hearing back is re-queued now."""
        try:
            response = self._post(CHECK_IN, self._check_in_body(0))
        except (DefenderError, TokenRefused):
            response = None
        if response is None or response.status_code != 200:
            logger.warning(
                "Could not tell the site that this agent holds no job; a job it claimed returns to the "
                "queue after its lease"
            )

    def run_job(self, job: Job) -> None:
        logger.info("Running job %s: %s of %s", job["id"], job["kind"], job["integration"]["name"])
        # wire.run_job's signature; the wire module is not annotated yet.
        run: Callable[[str, dict[str, Any], dict[str, Any]], tuple[bool, Any, str]] = wire.run_job
        try:
            ok, result, error = run(job["kind"], job["settings"], job["parameters"])
        except Exception as exc:
            # One broken job must not stop the node: say so to the site, which shows it to the person waiting.
            logger.exception("Job %s failed in the agent", job["id"])
            ok, result = False, None
            error = f"The agent on this node failed while running the job ({type(exc).__name__}); see its log."
        self._answer(job["id"], {"ok": ok, "result": result, "error": error})

    def give_back(self, job: Job) -> None:
        try:
            response = self._post(f"/api/nodes/jobs/{job['id']}/give-back/", {})
        except (DefenderError, TokenRefused):
            response = None
        if response is not None and response.status_code < 500:
            logger.info("Gave job %s back to the site", job["id"])
        else:
            self.unsettled = True
            logger.warning("Could not give job %s back", job["id"])

    def _answer(self, job_id: int, body: dict[str, Any]) -> None:
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
            elif response.status_code == 410:
                logger.info("Job %s was cancelled on the site; answer dropped (%s)", job_id, _reason(response))
            elif response.status_code == 409:
                logger.warning(
                    "Job %s is no longer this node's (re-queued, answered or timed out meanwhile); answer dropped",
                    job_id,
                )
            else:
                logger.error(
                    "The site answered %s to job %s's answer: %s", response.status_code, job_id, _reason(response)
                )
            return
        self.unsettled = True  # the next check-in returns the job to the queue
        logger.error("Gave up posting the answer to job %s; the site will run it again", job_id)


def _json(response: Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _reason(response: Response) -> str:
    return str(_json(response).get("error", ""))[:200]
