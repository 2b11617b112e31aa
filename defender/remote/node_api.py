"""The HTTPS endpoints a remote node's agent calls: check in and wait for work, claim a job, answer it, or give it
back.

Waiting and claiming are separate calls on purpose. A check-in may be cut short (the agent stops while it waits, the
connection drops) and the site cannot tell; so it never hands out a job, it only says that work is waiting. The claim
is a short call the agent always reads to its end, and each check-in says which jobs the agent still holds, so a claim
whose answer was lost anyway goes back to the queue at the agent's next check-in.

Every call carries the node's token in the Authorization header; a call with an unknown or revoked token, or about a
job that is not the node's, is refused with 401 and logged (without the token). Bodies are size-limited.
"""

import json
import logging
import math
import time
import zlib
from collections.abc import Callable, Mapping
from functools import partial, wraps
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from defender.models import Job, RemoteNode
from defender.operations import answers
from defender.remote import jobs, tokens, wire
from defender.services import untrusted

logger = logging.getLogger(__name__)

Message = TypeVar("Message")
# An endpoint as written (it is given the authenticated node) and as Django calls it.
NodeView = Callable[..., HttpResponse]

MAX_CHECK_IN_BYTES = 16 * 1024
# A job's answer nests twenty levels at most: an agent cuts an alert's raw JSON at untrusted.STORED_DEPTH.
MAX_JSON_DEPTH = 32
# Enough for any 64-bit integer.
MAX_INTEGER_DIGITS = 20
MAX_WAIT_SECONDS = 25
CLAIM_EVERY_SECONDS = 0.5


def max_result_bytes() -> int:
    return int(settings.REMOTE_NODE_MAX_RESULT_BYTES)


class BadBody(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def refuse(request: HttpRequest, status: int, message: str, *, log_reason: str | None = None) -> JsonResponse:
    if log_reason:
        address = request.META.get("REMOTE_ADDR", "?")
        logger.warning("Refused remote-node call to %s from %s: %s", request.path, address, log_reason)
    return JsonResponse({"error": message}, status=status)


def read_json(request: HttpRequest, limit: int) -> dict[str, Any]:
    """The request's JSON body, at most ``limit`` bytes once decompressed (agents gzip large results)."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if not declared.isdigit() or int(declared) > limit:
        raise BadBody(413, f"The body is larger than {limit} bytes.")
    raw = request.read(limit + 1)
    if request.META.get("HTTP_CONTENT_ENCODING", "") == "gzip":
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            raw = decompressor.decompress(raw, limit + 1)
        except zlib.error as exc:
            raise BadBody(400, "The body is not valid gzip.") from exc
    if len(raw) > limit:
        raise BadBody(413, f"The body is larger than {limit} bytes.")
    # Python's parser recurses once per level: thousands of nested arrays would end in a RecursionError, and a body
    # this site stores (a job's answer) must nest shallowly enough for every later step.
    if untrusted.nesting_depth(raw) > MAX_JSON_DEPTH:
        raise BadBody(400, f"The body nests arrays or objects more than {MAX_JSON_DEPTH} levels deep.")
    try:
        # Strictly UTF-8 (RFC 8259), so that the text parsed has the structure whose depth was counted in bytes.
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(400, "The body is not UTF-8.") from exc
    try:
        body = json.loads(text or "{}", parse_constant=_unstorable, parse_int=_integer, parse_float=_finite)
    except ValueError as exc:
        raise BadBody(400, "The body is not valid JSON.") from exc
    if not isinstance(body, dict):
        raise BadBody(400, "The body must be a JSON object.")
    if not untrusted.storable_document(text, body):
        # No database keeps a NUL character in text, nor an unpaired surrogate (JSON's \ud800): refused here
        # rather than failing where the body is stored.
        raise BadBody(400, "The body holds a NUL character or an unpaired surrogate, which this site cannot store.")
    return body


# Numbers no database column or JSON column takes (NaN, Infinity, beyond a float, integers beyond 64 bits) read as
# null, as a missing value would.
def _unstorable(name: str) -> None:
    return None


def _integer(digits: str) -> int | None:
    return int(digits) if len(digits.lstrip("-")) <= MAX_INTEGER_DIGITS else None


def _finite(digits: str) -> float | None:
    number = float(digits)
    return number if math.isfinite(number) else None


def read_message(reader: Callable[[Mapping[str, object]], Message], body: Mapping[str, object]) -> Message:
    """What ``reader`` makes of the body; a body not in the wire format's shape is refused with 400, naming why."""
    try:
        return reader(body)
    except wire.WireError as problem:
        raise BadBody(400, f"{problem}.") from problem


def node_endpoint(view: NodeView) -> NodeView:
    """Authenticate the node by its token, note that it checked in, and turn body problems into 4xx answers."""

    @login_not_required
    @csrf_exempt
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        node = tokens.node_for(token.strip()) if scheme.lower() == "bearer" else None
        if node is None:
            return refuse(request, 401, "Unknown or revoked node token.", log_reason="unknown or revoked token")
        if request.method != "POST":
            return refuse(request, 405, "Use POST.")
        RemoteNode.objects.filter(pk=node.pk).update(
            last_seen_at=timezone.now(), last_seen_address=request.META.get("REMOTE_ADDR")
        )
        try:
            return view(request, node, *args, **kwargs)
        except BadBody as problem:
            return refuse(request, problem.status, str(problem))

    return wrapper


def hand_out(node: RemoteNode, agent_id: str | None) -> wire.JobWire | None:
    """Claim the next job of the node's integrations for this agent and give what the node needs to run it."""
    while True:
        job = jobs.claim_next(node, agent_id=agent_id or "")
        if job is None:
            return None
        payload = answers.payload_or_fail(job)
        if payload is None:
            continue
        logger.info("Remote node %s claimed job %s (%s of %s)", node.name, job.pk, job.kind, job.integration)
        return payload


@node_endpoint
def check_in(request: HttpRequest, node: RemoteNode) -> HttpResponse:
    """Wait up to ``wait`` seconds for a job of this node's integrations; answer whether one is waiting.

    The agent then claims it with a call of its own. An agent that sends no agent_id (version 1.0) is handed the job
    in this answer, as before.
    """
    visit = read_message(wire.read_check_in, read_json(request, MAX_CHECK_IN_BYTES))
    agent_id = visit.agent_id
    if visit.agent_version != node.agent_version:
        RemoteNode.objects.filter(pk=node.pk).update(agent_version=visit.agent_version)
    give_up_at = time.monotonic() + min(max(visit.wait, 0), MAX_WAIT_SECONDS)
    if agent_id is not None:
        jobs.release_unheld(node, agent_id, list(visit.holding))
    answers.housekeeping()  # once per check-in; while it waits, each look for work is a single query
    answer: wire.CheckInAnswerWire = {"job": None, "work": False, "poll_interval": node.poll_interval_seconds}
    while True:
        if agent_id is None:
            answer["job"] = hand_out(node, None)
            if answer["job"] is not None:
                return JsonResponse(answer)
        elif jobs.work_waiting(node):
            return JsonResponse({**answer, "work": True})
        if time.monotonic() >= give_up_at:
            return JsonResponse(answer)
        time.sleep(CLAIM_EVERY_SECONDS)


@node_endpoint
def claim(request: HttpRequest, node: RemoteNode) -> HttpResponse:
    """Take the oldest queued job of the node's integrations for this agent: ``{"job": ...}``, or ``null``."""
    body = read_json(request, MAX_CHECK_IN_BYTES)
    agent_id = read_message(partial(wire.read_agent_id, required=True), body)
    answers.housekeeping()  # a job whose holder went silent is claimable again
    return JsonResponse({"job": hand_out(node, agent_id)})


def own_running_job(request: HttpRequest, node: RemoteNode, job_id: int) -> Job | JsonResponse:
    """The job, if this node holds it now, else the refusal to answer with. A job of another node's integration is
    refused as unauthorised; one of this node's that it no longer holds (re-queued after its lease, finished,
    deleted) is a conflict to drop."""
    job = Job.objects.select_related("integration").filter(pk=job_id).first()
    if job is not None and job.node_id != node.pk and job.integration.remote_node_id != node.pk:
        reason = f"node {node.name} asked about job {job_id}, which is not its own"
        return refuse(request, 401, "This job is not this node's.", log_reason=reason)
    if job is not None and job.state == Job.State.CANCELLED:
        return refuse(request, 410, f"Job {job_id} is no longer wanted: {job.error}")
    if job is None or job.node_id != node.pk or job.state != Job.State.RUNNING:
        state = job.state if job else "gone"
        return refuse(request, 409, f"Job {job_id} is no longer this node's to answer (it is {state}).")
    return job


@node_endpoint
def answer(request: HttpRequest, node: RemoteNode, job_id: int) -> HttpResponse:
    job = own_running_job(request, node, job_id)
    if isinstance(job, JsonResponse):
        return job
    try:
        body = read_json(request, max_result_bytes())
    except BadBody as problem:
        # The node did answer, in a way this site cannot read: the job ends now, saying why, instead of waiting out
        # its lease to be sent round again to the same answer.
        answers.fail(job, f"The remote node's answer was refused: {problem} Update its agent.")
        raise
    try:
        reply = wire.read_answer(job.kind, body)
    except wire.WireError as problem:
        # Said to the person waiting and to the agent: which field is wrong, never what was in it.
        answers.fail(job, f"The remote node's answer could not be read ({problem}); update its agent.")
        return refuse(
            request,
            400,
            f"The answer is not in the shape this site reads (agent {wire.AGENT_VERSION}): {problem}.",
            log_reason=f"unreadable answer ({problem})",
        )
    if not answers.complete(job, reply.ok, reply.result, reply.error):
        return refuse(request, 409, f"Job {job_id} was answered or re-queued meanwhile.")
    logger.info("Remote node %s answered job %s: %s", node.name, job.pk, "ok" if reply.ok else "failed")
    return JsonResponse({"state": Job.State.DONE if reply.ok else Job.State.FAILED})


@node_endpoint
def give_back(request: HttpRequest, node: RemoteNode, job_id: int) -> HttpResponse:
    job = own_running_job(request, node, job_id)
    if isinstance(job, JsonResponse):
        return job
    jobs.release(job)
    logger.info("Remote node %s gave job %s back", node.name, job.pk)
    return JsonResponse({"state": Job.State.QUEUED})


urlpatterns = [
    path("api/nodes/check-in/", check_in, name="node-check-in"),
    path("api/nodes/claim/", claim, name="node-claim"),
    path("api/nodes/jobs/<int:job_id>/answer/", answer, name="node-job-answer"),
    path("api/nodes/jobs/<int:job_id>/give-back/", give_back, name="node-job-give-back"),
]
