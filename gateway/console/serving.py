"""What the console's pages show and do: it is a client of the admin API, called in-process.

    >>> api = AdminAPI(app, token)                       # doctest: +SKIP
    >>> reply = await api.call("GET", "/routing")        # an httpx.Response, as for curl
    >>> api_error(reply)                                 # None, or the API's error message

Every change goes through ``/admin/v1`` (or ``/v1`` for the try-it box), so the console validates,
refuses and records exactly as the API does. The live numbers come from the same Prometheus
registry as ``/metrics``; reports are the evaluation runs under ``<data dir>/runs``.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import markdown
from fastapi import FastAPI
from prometheus_client import REGISTRY

REPORT = "report.md"


class AdminAPI:
    """The gateway's own HTTP API, called through ASGI with the admin token (no socket)."""

    def __init__(self, app: FastAPI, token: str):
        self.app = app
        self.token = token

    async def call(
        self,
        method: str,
        path: str,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """``path`` under ``/admin/v1``, or an absolute ``/v1/...`` path."""
        url = path if path.startswith("/v1/") else f"/admin/v1{path}"
        transport = httpx.ASGITransport(app=self.app)
        auth = {"Authorization": f"Bearer {self.token}"}
        # Generation on a busy CPU can take minutes; the API itself bounds every request.
        async with httpx.AsyncClient(
            transport=transport, base_url="http://console", headers=auth, timeout=None
        ) as client:
            return await client.request(method, url, json=json, params=params, headers=headers)


def api_error(response: httpx.Response) -> str | None:
    """The OpenAI-shaped error's message, or None for a success."""
    if response.is_success:
        return None
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


# Forms


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def paragraphs(text: str) -> list[str]:
    """Documents in one text box, separated by blank lines."""
    blocks = text.replace("\r\n", "\n").split("\n\n")
    return [block.strip() for block in blocks if block.strip()]


def forget_request_body(form: dict[str, Any], questions: list[str], answers: list[str]) -> dict:
    """The ``POST /admin/v1/forget-requests`` body of the console's form (blank rows dropped)."""
    pairs = [
        {"question": q.strip(), "answer": a.strip()}
        for q, a in zip(questions, answers, strict=False)
        if q.strip() or a.strip()
    ]
    return {
        "subject": form.get("subject", ""),
        "concepts": lines(form.get("concepts", "")),
        "documents": paragraphs(form.get("documents", "")),
        "qa": pairs,
        "note": form.get("note", ""),
    }


# Live numbers


@dataclass
class LatencySummary:
    count: float = 0.0
    total_s: float = 0.0
    buckets: list[tuple[float, float]] = field(default_factory=list)
    """(upper bound, cumulative count), in order."""

    @property
    def mean_ms(self) -> float:
        return 1000 * self.total_s / self.count if self.count else math.nan

    def quantile_ms(self, q: float) -> float:
        """Linear interpolation within the bucket, as Prometheus' ``histogram_quantile``."""
        if not self.count:
            return math.nan
        rank, lower, below = q * self.count, 0.0, 0.0
        for upper, cumulative in self.buckets:
            if cumulative >= rank:
                if math.isinf(upper):
                    return 1000 * lower
                share = (rank - below) / (cumulative - below) if cumulative > below else 1.0
                return 1000 * (lower + (upper - lower) * share)
            lower, below = upper, cumulative
        return 1000 * lower


@dataclass
class LiveNumbers:
    arms: dict[str, float]
    blocks: dict[tuple[str, str], float]
    statuses: dict[str, float]
    latency: dict[str, LatencySummary]
    engine_ready: bool
    forget_requests: float


def live_numbers() -> LiveNumbers:
    """The gateway's counters since it started, from the registry ``/metrics`` exports."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in REGISTRY.collect():
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    statuses: dict[str, float] = {}
    for labels, value in samples.get("obliviate_requests_total", []):
        statuses[labels["status"]] = statuses.get(labels["status"], 0) + value
    latency: dict[str, LatencySummary] = {}
    for suffix in ("count", "sum", "bucket"):
        for labels, value in samples.get(f"obliviate_request_duration_seconds_{suffix}", []):
            summary = latency.setdefault(labels["route"], LatencySummary())
            if suffix == "count":
                summary.count = value
            elif suffix == "sum":
                summary.total_s = value
            else:
                summary.buckets.append((float(labels["le"]), value))
    one = {name: rows[0][1] if rows else 0.0 for name, rows in samples.items()}
    return LiveNumbers(
        arms={labels["arm"]: v for labels, v in samples.get("obliviate_arm_requests_total", [])},
        blocks={
            (labels["layer"], labels["stage"]): v
            for labels, v in samples.get("obliviate_blocks_total", [])
        },
        statuses=dict(sorted(statuses.items())),
        latency=latency,
        engine_ready=one.get("obliviate_engine_ready", 0.0) == 1.0,
        forget_requests=one.get("obliviate_forget_index_requests", 0.0),
    )


# Reports


def reports(runs: Path) -> list[str]:
    """Run folders (relative to ``runs``) holding a report, newest first."""
    found = [p for p in runs.glob(f"**/{REPORT}") if p.is_file()] if runs.is_dir() else []
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [p.parent.relative_to(runs).as_posix() for p in found]


def report_file(runs: Path, relative: str) -> Path | None:
    """The file ``relative`` under ``runs``, or None if it is elsewhere (``..``) or missing."""
    path = (runs / relative).resolve()
    return path if path.is_relative_to(runs.resolve()) and path.exists() else None


def render_report(folder: Path) -> str:
    """A run's Markdown report as HTML; its text is escaped first (it quotes forget data)."""
    text = html.escape((folder / REPORT).read_text(), quote=False)
    return markdown.markdown(text, extensions=["tables"])


@dataclass(frozen=True)
class AuditPoint:
    x: float
    y: float
    low: float
    high: float
    arm: str
    label: str


ARM_COLOURS = {"suppression": "#0550ae", "removal": "#a40e26", "hybrid": "#116329"}


def audit_points(
    entries: list[dict[str, Any]], width: int = 480, height: int = 160
) -> list[AuditPoint]:
    """The audits of a request's evidence, placed on the history plot: one point per audit in
    order, its leak rate up the y axis (0 at the bottom), its 95 % interval as a bar."""
    audits = [e for e in entries if e["kind"] == "audit"]
    step = width / (len(audits) + 1)

    def y(rate: float) -> float:
        return height - 10 - rate * (height - 20)

    return [
        AuditPoint(
            x=step * (i + 1), y=y(a["data"]["leak_rate"]), low=y(a["data"]["interval"][0]),
            high=y(a["data"]["interval"][1]), arm=a["data"]["arm"],
            label=f"{a['data']['arm']} at {a['data']['version']}, {a['at'][:19]}: "
                  f"{a['data']['leaks']} of {a['data']['questions']} leaked",
        )
        for i, a in enumerate(audits)
    ]  # fmt: skip
