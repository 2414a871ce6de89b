"""Audits: each serving arm asked a forget request's questions and attack probes, the answers
judged for leaks, the result put in the request's evidence.

    auditor = Auditor(app, log, store, router, settings, "replica-a", lambda: upstream.ready)
    await auditor.round()          # one audit, if one is due; the supervisor repeats it

An audit is due for every active forget request and every arm that serves traffic (the default
arm and every arm with a weight), at the model version that arm serves: filing a request, a new
removal version and a routing change each make new ones due. Each is asked through the gateway's
own serving path (its ASGI app, with the admin token and the arm's header), so every layer acts
as it does for users. One audit per round, so ``audit_interval_s`` bounds their rate; replicas
sharing the database claim each audit, and its entry's key records it once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args

import httpx
from fastapi import FastAPI

from gateway.config import Settings
from gateway.errors import Conflict
from gateway.evidence import leaks
from gateway.evidence.probes import Fact, probes
from gateway.evidence.serving import FULL_SCAN_S, RECENT_S
from gateway.evidence.store import AUDIT, EvidenceLog
from gateway.openai.serving import LAYERS_HEADER
from gateway.ops import metrics
from gateway.routing.protocol import ARM_HEADER, VERSION_HEADER, Arm
from gateway.routing.serving import Router, served_version
from index.errors import ObliviateError
from index.store import REVOKED, ForgetRequest, ForgetStore, LifecycleReads

log = logging.getLogger(__name__)
LEASE_S = 600.0
"""An audit whose replica died is taken over after this long."""
RETRY_S, MAX_RETRY_S = 30.0, 1800.0
"""A failed audit is tried again after these (doubling), while the others go on."""
BASE = "base"
"""The version of arms that serve the base weights (suppression)."""


class AuditInterrupted(ObliviateError):
    """An arm did not answer (the engine restarted, a 5xx): nothing is recorded."""


@dataclass(frozen=True)
class ArmAt:
    arm: Arm
    version: str


def audit_key(request_id: str, arm: ArmAt) -> str:
    return f"audit:{request_id}:{arm.arm}:{arm.version}"


def serving_arms(router: Router) -> list[ArmAt]:
    """The arms users reach now, each at the version it serves (removal arms with no version
    yet serve nothing)."""
    config = router.config
    arms = {config.default_arm} | {a for a, w in config.weights.items() if w > 0}
    found = []
    for arm in sorted(a for a in arms if a in get_args(Arm) and a != "baseline"):
        if arm == "suppression":
            found.append(ArmAt(arm, BASE))
            continue
        try:
            found.append(ArmAt(arm, served_version(config, router.registry).id))
        except Conflict:  # no version to serve yet: nothing to audit there
            continue
    return found


def facts_of(request: ForgetRequest) -> list[Fact]:
    """The request's QA pairs; a request of documents only is asked about its subject. A
    request of a subject or concepts alone has no fact to ask for: none."""
    facts = [Fact(p.get("question", ""), p["answer"]) for p in request.qa if p.get("answer")]
    if facts:
        return facts
    about = request.subject or ", ".join(request.concepts) or "this"
    return [Fact(f"What do you know about {about}?", text) for text in request.documents]


class Auditor:
    def __init__(
        self,
        app: FastAPI,
        evidence: EvidenceLog,
        store: ForgetStore,
        router: Router,
        settings: Settings,
        owner: str,
        ready: Callable[[], bool],
    ):
        """``ready``: whether the engine answers (no audit is asked of one that starts)."""
        self.ready = ready
        self.active: dict[str, None] = {}
        """The active requests, oldest first, kept from what changed in the store."""
        self._reads = LifecycleReads(RECENT_S, FULL_SCAN_S)
        self.done: set[str] = set()
        self.retry: dict[str, tuple[float, float]] = {}
        """Audit key -> (when it may be tried again, the pause after that)."""
        self.evidence = evidence
        self.store = store
        self.router = router
        self.settings = settings
        self.owner = owner
        token = settings.admin_token.get_secret_value() if settings.admin_token else ""
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://gateway",
            headers={"Authorization": f"Bearer {token}"},
            timeout=600,
        )

    async def round(self) -> None:
        if not self.ready():
            return
        due = await asyncio.to_thread(self._next_due)
        if due is None:
            return
        key = audit_key(due[0].id, due[1])
        try:
            await self.audit(*due)
        except Exception:
            metrics.AUDITS_FAILED.labels(due[1].arm).inc()
            pause = min(MAX_RETRY_S, self.retry.get(key, (0.0, RETRY_S / 2))[1] * 2)
            self.retry[key] = (time.monotonic() + pause, pause)
            raise  # the supervisor logs it and shows it in /health
        self.retry.pop(key, None)

    def _next_due(self) -> tuple[ForgetRequest, ArmAt] | None:
        arms = serving_arms(self.router)
        keys = [(audit_key(i, arm), i, arm) for i in self._active() for arm in arms]
        # Recorded audits stay recorded: only the others are looked up again.
        self.done |= self.evidence.recorded([k for k, _, _ in keys if k not in self.done])
        now = time.monotonic()
        for key, request_id, arm in keys:
            if key in self.done or self.retry.get(key, (0.0,))[0] > now:
                continue
            if self.evidence.claim(key, self.owner, LEASE_S):
                request = self.store.get(request_id)
                if request is not None:
                    return request, arm
        return None

    def _active(self) -> dict[str, None]:
        """``active`` brought up to date from what changed lately, so a round every
        ``audit_interval_s`` does not read every request."""
        now = datetime.now(UTC)
        since = self._reads.since(now)
        states, purged = self.store.lifecycle(since), self.store.purged_ids(since)
        active = {} if since is None else self.active  # a failed read changes nothing
        for state in states:
            if state.status == REVOKED:
                active.pop(state.id, None)
            else:
                active[state.id] = None
        for request_id in purged:
            active.pop(request_id, None)
        self.active = active
        self._reads.done(now, since)
        return active

    async def audit(self, request: ForgetRequest, arm: ArmAt) -> None:
        """Ask ``arm`` the request's probes and record what came back."""
        settings = self.settings
        facts = facts_of(request)
        chosen = []
        for i in range(settings.audit_probes if facts else 0):
            fact = facts[i % len(facts)]
            made = probes(fact, request.subject, best_of=settings.audit_best_of)
            family = list(made)[i % len(made)]
            chosen.append((family, fact, made[family]))
        flags, layers, errors, versions = [], Counter(), 0, set()
        records: list[dict[str, Any]] = []
        for family, fact, probe in chosen:
            body = {
                "model": settings.model_name,
                "messages": probe.messages,
                "max_tokens": settings.audit_max_tokens,
                "temperature": 0,
                **probe.extra,
            }
            response = await self.client.post(
                "/v1/chat/completions", json=body, headers={ARM_HEADER: arm.arm}
            )
            if response.status_code == 400:
                errors += 1  # refused (suppressed in the error style, or a shape it refuses)
                replies = []
            elif response.status_code != 200:  # not an answer (401, 429, 5xx): tried again
                raise AuditInterrupted(f"{arm.arm} answered {response.status_code}")
            else:
                replies = replies_of(response.json())
                layers.update(filter(None, response.headers.get(LAYERS_HEADER, "").split(",")))
                versions.add(response.headers.get(VERSION_HEADER) or BASE)
            leaked = any(leaks.leaked(fact.answer, probe.given, r) for r in replies)
            flags.append(leaked)
            question, *answers = await asyncio.to_thread(
                self.evidence.keyed, request.id, [fact.question, *replies]
            )
            records.append({"family": family, "question": question, "replies": answers,
                            "status": response.status_code, "leaked": leaked})  # fmt: skip
        if await asyncio.to_thread(self.store.get, request.id) is None:
            # Purged while it was asked: its salt goes again, and nothing is recorded.
            await asyncio.to_thread(self.evidence.forget_salt, request.id)
            return
        low, high = leaks.wilson(flags)
        data = {"arm": arm.arm, "version": arm.version, "served_versions": sorted(versions),
                "questions": len(flags), "leaks": sum(flags), "leak_rate": leaks.rate(flags),
                "interval": [low, high], "layers": dict(layers), "refused": errors,
                "probes": records}  # fmt: skip
        if not facts:
            data["note"] = "nothing to ask: the request holds no question or document"
        await asyncio.to_thread(
            self.evidence.append, request.id, AUDIT, data, audit_key(request.id, arm)
        )
        self.done.add(audit_key(request.id, arm))
        metrics.AUDITS.labels(arm.arm).inc()
        metrics.AUDIT_LEAK_RATE.labels(arm.arm).set(data["leak_rate"])
        log.info("audited %s on %s@%s: %d of %d leaked", request.id, arm.arm, arm.version,
                 sum(flags), len(flags))  # fmt: skip

    async def aclose(self) -> None:
        await self.client.aclose()


def replies_of(completion: dict[str, Any]) -> list[str]:
    """Every text a client could read in a chat completion: content, reasoning, tool arguments."""
    texts = []
    for choice in completion.get("choices", []):
        message = choice.get("message") or {}
        texts += [message.get(k) or "" for k in ("content", "reasoning_content", "reasoning")]
        texts += [c["function"]["arguments"] for c in message.get("tool_calls") or []]
    return [t for t in texts if t]
