"""What a webhook delivery means, decided the same way on every cloud.

`Receiver.handle` takes the raw request (headers and body bytes) and does, in
this order, nothing of which depends on a cloud:

1. size: a body over `MAX_BODY_BYTES` is refused (400) before it is hashed;
2. signature: `X-Hub-Signature-256` must be `sha256=` + the hex HMAC-SHA256 of
   the raw body under the webhook secret, compared in constant time, before
   anything is parsed (401 otherwise: nothing changes)
   (https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries);
3. event: `ping` answers 200; any event but `workflow_job` answers 202 and is ignored;
4. parse: malformed JSON or a payload without the fields used below -> 400;
5. action: only `queued` can grow a pool. `in_progress`, `completed` and
   `waiting` change nothing: an ephemeral VM leaves its group by itself after
   its job, an idle one after `idle_timeout`, and a job that waits for an
   environment's approval is queued again when approved;
6. pool: the pool-choice rule (see `choose_pool`) picks at most one pool over
   all pools of the stack, both clouds; the receiver acts only when that pool
   is of its own cloud and scales on demand, so a job is never grown for twice.

Scaling itself is the `Groups` protocol a cloud adapter implements.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from scaler.config import Pool, ScalerConfig

# workflow_job payloads are ~10 KB (GitHub's own examples: 7-12 KB); GitHub caps
# any payload at 25 MB (https://docs.github.com/en/webhooks/webhook-events-and-payloads#payload-cap).
# 1 MiB leaves a hundredfold margin and keeps a flood of junk cheap to refuse.
MAX_BODY_BYTES = 1 << 20
SIGNATURE_HEADER = "x-hub-signature-256"
EVENT_HEADER = "x-github-event"
DELIVERY_HEADER = "x-github-delivery"
ACTIONS = ("queued", "in_progress", "completed", "waiting")

log = logging.getLogger("scaler")


class ScaleError(Exception):
    """A cloud call (scaling, or reading a secret) failed after its retries: 503, and the reconcile repairs."""


@dataclass(frozen=True)
class Grown:
    """What a scale-up did: `added` is False when the cloud held the group at max or the job already had its VM."""

    added: bool
    detail: str


class Groups(Protocol):
    """One cloud's scaling verbs; every method acts on a pool of that cloud."""

    def grow(self, pool: Pool, job_id: int) -> Grown:
        """One more VM for this queued job: atomic, bounded by the pool's max."""
        ...


@dataclass(frozen=True)
class Reply:
    """The HTTP answer, plus what was decided (for logs and tests; never secret)."""

    status: int
    decision: str
    pool: str | None = None
    job_id: int | None = None
    detail: str = ""

    @property
    def body(self) -> str:
        doc: dict[str, Any] = {"decision": self.decision}
        if self.pool:
            doc["pool"] = self.pool
        if self.detail:
            doc["detail"] = self.detail
        return json.dumps(doc, separators=(",", ":"))


@dataclass(frozen=True)
class Job:
    """The fields of a workflow_job delivery the decision uses."""

    action: str
    job_id: int
    labels: tuple[str, ...]
    repository: str  # owner/name
    owner: str


def signature_valid(secret: bytes, body: bytes, header: str | None) -> bool:
    """GitHub's `sha256=<hex>` HMAC of the raw body; constant-time compare."""
    if not header or not secret:
        return False
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    # compare_digest wants both sides ASCII (str) or bytes; a non-ASCII header is simply wrong.
    return hmac.compare_digest(expected.encode(), header.strip().encode("utf-8", "replace"))


def choose_pool(labels: Iterable[str], pools: Iterable[Pool]) -> Pool | None:
    """The one pool a job's `runs-on` labels go to, or None.

    A pool fits when every label of the job is one of the pool's labels,
    compared case-insensitively (GitHub matches runner labels that way). Of
    the fitting pools the one with the fewest labels wins -- the tightest fit,
    so `[self-hosted, linux]` does not take a GPU pool's capacity -- then the
    lowest `order` (position in runners.yaml). A job without labels fits no pool.
    """
    wanted = frozenset(label.lower() for label in labels)
    if not wanted:
        return None
    fitting = [pool for pool in pools if wanted <= pool.label_keys]
    return min(fitting, key=lambda pool: (len(pool.label_keys), pool.order), default=None)


def parse_job(body: bytes) -> Job | str:
    """The Job of a workflow_job payload, or why it is malformed."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "body is not JSON"
    if not isinstance(doc, dict):
        return "payload is not an object"
    action, job, repo = doc.get("action"), doc.get("workflow_job"), doc.get("repository")
    if not isinstance(action, str):
        return "payload has no action"
    if not isinstance(job, dict) or not isinstance(repo, dict):
        return "payload has no workflow_job or repository"
    job_id, labels = job.get("id"), job.get("labels")
    if not isinstance(job_id, int) or isinstance(job_id, bool) or job_id <= 0:
        return "workflow_job.id is not a positive integer"
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        return "workflow_job.labels is not a list of strings"
    full_name = repo.get("full_name")
    owner = repo.get("owner")
    login = owner.get("login") if isinstance(owner, dict) else None
    if not isinstance(full_name, str) or not isinstance(login, str):
        return "repository has no full_name or owner.login"
    return Job(action, job_id, tuple(labels), full_name, login)


def in_target(config: ScalerConfig, job: Job) -> bool:
    """Runners of a repository serve only it; an organization's serve its repositories.

    A delivery from elsewhere (a webhook that shares the secret by mistake)
    would grow a pool whose runners can never take the job.
    """
    target = config.github.target.lower()
    if config.github.scope == "repository":
        return job.repository.lower() == target
    if config.github.scope == "organization":
        return job.owner.lower() == target
    return True  # enterprise: any organization of the enterprise; GitHub only sends its own


# A rotated webhook secret reaches a warm function this long after the first
# delivery it fails to verify; a flood of bad signatures costs at most one
# secret read per this many seconds.
SECRET_REFRESH_SECONDS = 60.0


@dataclass
class Receiver:
    """The cloud-neutral webhook handler.

    `read_secret` fetches the webhook secret from the cloud's store: once at
    the first delivery, and again when a signature fails and the cached secret
    is older than SECRET_REFRESH_SECONDS (the stack may have rotated it).
    """

    config: ScalerConfig
    read_secret: Callable[[], bytes]
    groups: Groups
    clock: Callable[[], float] = field(default=time.monotonic)
    _secret: bytes = b""
    _read_at: float = float("-inf")

    def secret(self, *, refresh: bool = False) -> bytes:
        now = self.clock()
        if not self._secret or (refresh and now - self._read_at >= SECRET_REFRESH_SECONDS):
            self._secret, self._read_at = self.read_secret(), now
        return self._secret

    def signed(self, body: bytes, header: str | None) -> bool:
        if signature_valid(self.secret(), body, header):
            return True
        before = self._secret
        return self.secret(refresh=True) != before and signature_valid(self._secret, body, header)

    def handle(self, headers: Mapping[str, str], body: bytes) -> Reply:
        started = self.clock()
        lower = {k.lower(): v for k, v in headers.items()}
        delivery = lower.get(DELIVERY_HEADER, "-")[:64]
        try:
            reply = self._decide(lower, body)
        except Exception as exc:  # a bug or an answer nobody foresaw: say so, answer 500, keep serving
            log.error(json.dumps({"delivery": delivery, "error": type(exc).__name__}), exc_info=True)
            reply = Reply(500, "internal-error", detail=type(exc).__name__)
        fields = {
            "delivery": delivery,
            "event": lower.get(EVENT_HEADER, "-")[:64],
            "status": reply.status,
            "decision": reply.decision,
            "ms": round((self.clock() - started) * 1000, 2),
        }
        if reply.pool:
            fields["pool"] = reply.pool
        if reply.job_id:
            fields["job"] = reply.job_id
        if reply.detail:
            fields["detail"] = reply.detail
        log.info(json.dumps(fields, separators=(",", ":")))
        return reply

    def _decide(self, headers: Mapping[str, str], body: bytes) -> Reply:
        if len(body) > MAX_BODY_BYTES:
            return Reply(400, "too-large", detail=f"body over {MAX_BODY_BYTES} bytes")
        try:
            signed = self.signed(body, headers.get(SIGNATURE_HEADER))
        except ScaleError as exc:  # the secret store did not answer: GitHub records a failed delivery
            return Reply(503, "secret-unavailable", detail=str(exc)[:200])
        if not signed:
            return Reply(401, "bad-signature")
        event = headers.get(EVENT_HEADER)
        if event == "ping":
            return Reply(200, "pong")
        if event != "workflow_job":
            return Reply(202, "ignored-event")
        job = parse_job(body)
        if isinstance(job, str):
            return Reply(400, "malformed", detail=job)
        if job.action != "queued":
            decision = "noted" if job.action in ACTIONS else "ignored-action"
            return Reply(200, decision, job_id=job.job_id, detail=job.action)
        if not in_target(self.config, job):
            return Reply(200, "not-target", job_id=job.job_id)
        pool = choose_pool(job.labels, self.config.pools)
        if pool is None:
            return Reply(200, "no-pool", job_id=job.job_id)
        if pool.cloud != self.config.cloud:
            return Reply(200, "other-cloud", pool.name, job.job_id)
        if not pool.scales_on_demand:
            return Reply(200, "fixed-pool", pool.name, job.job_id)
        try:
            grown = self.groups.grow(pool, job.job_id)
        except ScaleError as exc:
            # GitHub does not redeliver by itself; the reconcile closes this gap.
            return Reply(503, "scale-failed", pool.name, job.job_id, str(exc)[:200])
        return Reply(200, "grown" if grown.added else "held", pool.name, job.job_id, grown.detail)
