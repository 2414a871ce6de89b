"""The admin console: server-rendered pages at ``/admin/`` for people who would rather look than
curl. Sign-in takes the admin token once and keeps a session cookie (HttpOnly, SameSite=Strict).

Every form posts back here, and the handler makes the matching admin API call in-process
(``serving.AdminAPI``), then redirects (303) to the page with a notice, or shows the form again
with the API's error and what was typed. No page needs JavaScript except to refresh the live
regions (job progress, live numbers); nothing is fetched from outside the gateway.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, get_args
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException

from gateway.auth import key_matches
from gateway.console.serving import (
    ARM_COLOURS,
    AdminAPI,
    api_error,
    audit_points,
    forget_request_body,
    live_numbers,
    render_report,
    report_file,
    reports,
)
from gateway.errors import PermissionDenied
from gateway.routing.protocol import ARM_HEADER, Arm

HERE = Path(__file__).parent
COOKIE = "obliviate_console"
ARMS = list(get_args(Arm))
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}

templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["time"] = lambda unix: (
    datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if unix else ""
)
router = APIRouter(prefix="/admin", include_in_schema=False)


def _session_value(token: str) -> str:
    """The cookie's value: a MAC of the admin token, so changing the token signs everyone out."""
    return hmac.new(token.encode(), b"obliviate console session", hashlib.sha256).hexdigest()


def _admin_token(request: Request) -> str | None:
    token = request.app.state.settings.admin_token
    return token.get_secret_value() if token else None


async def signed_in(request: Request) -> AdminAPI:
    """The admin API for a signed-in browser; otherwise a redirect to the sign-in page."""
    token = _admin_token(request)
    cookie = request.cookies.get(COOKIE, "")
    if not token or not hmac.compare_digest(cookie.encode(), _session_value(token).encode()):
        target = quote(request.url.path)
        # The app's HTTPException handler keeps these headers: the browser follows the 303.
        location = {"Location": f"/admin/login?next={target}"}
        raise HTTPException(303, "Sign in first.", headers=location)
    origin = request.headers.get("origin")
    if request.method == "POST" and origin and origin != str(request.base_url).rstrip("/"):
        raise PermissionDenied("Cross-site form posts are refused.")
    return AdminAPI(request.app, token)


Console = Annotated[AdminAPI, Depends(signed_in)]


def _page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    context |= {"notice": request.query_params.get("notice")}
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def _back(path: str, notice: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?notice={quote(notice)}", status_code=303)


# Sign-in


def _safe_next(target: str | None) -> str:
    """Only console pages: never an open redirect to another site."""
    ok = target and target.startswith("/admin/") and not target.startswith("//")
    return target if ok else "/admin/forget-requests"


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return _page(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login", response_model=None)
async def login(request: Request) -> Response:
    form = await request.form()
    token = _admin_token(request)
    target = _safe_next(str(form.get("next", "")))
    if not token:
        error = "The admin API is disabled: set OBLIVIATE_ADMIN_TOKEN to enable it."
        return _page(request, "login.html", 403, next=target, error=error)
    if not key_matches(str(form.get("token", "")), [token]):
        return _page(request, "login.html", 401, next=target, error="Incorrect admin token.")
    response = RedirectResponse(target, status_code=303)
    secure = request.url.scheme == "https"
    response.set_cookie(
        COOKIE,
        _session_value(token),
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/admin",
    )
    return response


@router.post("/logout")
async def logout() -> RedirectResponse:
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(COOKIE, path="/admin")
    return response


@router.get("/static/{name}")
async def static(name: str) -> FileResponse:
    if name not in STATIC:
        raise HTTPException(404, f"No console file {name!r}.")
    return FileResponse(HERE / "static" / name, media_type=STATIC[name])


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/admin/forget-requests", status_code=303)


# Forget requests


async def _forget_page(
    request: Request,
    api: AdminAPI,
    status_code: int = 200,
    form: dict[str, Any] | None = None,
    error: str | None = None,
    tried: dict[str, Any] | None = None,
) -> HTMLResponse:
    query = {k: v for k in ("q", "status", "after") if (v := request.query_params.get(k))}
    listed = await api.call("GET", "/forget-requests", params={**query, "limit": 50})
    return _page(
        request,
        "forget_requests.html",
        status_code,
        listing=listed.json() if listed.is_success else {"data": [], "has_more": False},
        list_error=api_error(listed),
        query=query,
        form=form or {},
        error=error,
        tried=tried,
        arms=ARMS,
    )


@router.get("/forget-requests")
async def forget_requests(request: Request, api: Console) -> HTMLResponse:
    return await _forget_page(request, api)


@router.post("/forget-requests", response_model=None)
async def add_forget_request(request: Request, api: Console) -> Response:
    form = await request.form()
    fields = {k: str(v) for k, v in form.items()}
    questions = [str(v) for v in form.getlist("question")]
    answers = [str(v) for v in form.getlist("answer")]
    body = forget_request_body(fields, questions, answers)
    created = await api.call("POST", "/forget-requests", body)
    if error := api_error(created):
        fields |= {"pairs": list(zip(questions, answers, strict=False))}
        return await _forget_page(request, api, created.status_code, form=fields, error=error)
    record = created.json()
    subject = record["subject"] or "no subject"
    return _back("/admin/forget-requests", f"Added {record['id']} ({subject}).")


@router.get("/forget-requests/{request_id}/revoke")
async def confirm_revoke(request: Request, request_id: str, api: Console) -> HTMLResponse:
    found = await api.call("GET", f"/forget-requests/{quote(request_id)}")
    if error := api_error(found):
        return _page(request, "message.html", found.status_code, title="Not found", error=error)
    return _page(request, "revoke.html", record=found.json())


@router.post("/forget-requests/{request_id}/revoke", response_model=None)
async def revoke(request: Request, request_id: str, api: Console) -> Response:
    revoked = await api.call("DELETE", f"/forget-requests/{quote(request_id)}")
    if error := api_error(revoked):
        return _page(request, "message.html", revoked.status_code, title="Not revoked", error=error)
    return _back("/admin/forget-requests", f"Revoked {request_id}.")


@router.get("/forget-requests/{request_id}/evidence")
async def evidence(request: Request, request_id: str, api: Console) -> HTMLResponse:
    """The request's evidence: its lifecycle and audits, and the audits' leak rates plotted."""
    found = await api.call("GET", f"/forget-requests/{quote(request_id)}/evidence")
    if error := api_error(found):
        return _page(request, "message.html", found.status_code, title="Not found", error=error)
    entries = found.json()["entries"]
    return _page(request, "evidence.html", request_id=request_id, entries=entries,
                 points=audit_points(entries), colours=ARM_COLOURS)  # fmt: skip


@router.get("/forget-requests/{request_id}/evidence/export", response_model=None)
async def evidence_export(request: Request, request_id: str, api: Console) -> Response:
    exported = await api.call("GET", f"/forget-requests/{quote(request_id)}/evidence/export")
    if error := api_error(exported):
        return _page(request, "message.html", exported.status_code, title="Not found", error=error)
    disposition = exported.headers["content-disposition"]
    return Response(exported.content, media_type="application/json",
                    headers={"Content-Disposition": disposition})  # fmt: skip


@router.post("/try")
async def try_it(request: Request, api: Console) -> HTMLResponse:
    """Send a prompt through an arm, as an admin picking the arm with its header."""
    form = await request.form()
    prompt, arm = str(form.get("prompt", "")), str(form.get("arm", "suppression"))
    body = {
        "model": request.app.state.settings.model_name,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 64,
        "temperature": 0,
    }
    reply = await api.call("POST", "/v1/chat/completions", body, headers={ARM_HEADER: arm})
    tried: dict[str, Any] = {"prompt": prompt, "arm": arm, "error": api_error(reply)}
    if tried["error"] is None:
        tried |= {
            "answer": reply.json()["choices"][0]["message"]["content"],
            "served_by": reply.headers.get(ARM_HEADER, ""),
            "version": reply.headers.get("x-obliviate-model-version", ""),
            "layers": [n for n in reply.headers.get("x-obliviate-layers", "").split(",") if n],
        }
    return await _forget_page(request, api, tried=tried)


# Removal jobs


async def _jobs_page(
    request: Request,
    api: AdminAPI,
    status_code: int = 200,
    form: dict | None = None,
    error: str | None = None,
) -> HTMLResponse:
    from removal.methods import METHODS  # torch: not part of every gateway's start

    pending = await api.call(
        "GET", "/forget-requests", params={"status": "suppressed", "limit": 100}
    )
    versions = await api.call("GET", "/model-versions")
    return _page(
        request,
        "removal_jobs.html",
        status_code,
        methods=sorted(METHODS),
        pending=pending.json()["data"] if pending.is_success else [],
        versions=versions.json()["data"] if versions.is_success else [],
        jobs=await _jobs(api),
        form=form or {"params": '{"steps": 10}'},
        error=error,
    )


async def _jobs(api: AdminAPI) -> list[dict]:
    listed = await api.call("GET", "/removal-jobs")
    return sorted(listed.json()["data"], key=lambda j: j["created_at"], reverse=True)


@router.get("/removal-jobs")
async def removal_jobs(request: Request, api: Console) -> HTMLResponse:
    return await _jobs_page(request, api)


@router.get("/removal-jobs/table")
async def removal_jobs_table(request: Request, api: Console) -> HTMLResponse:
    """The job history alone, which the page refreshes while a job runs."""
    return _page(request, "removal_jobs_table.html", jobs=await _jobs(api))


@router.post("/removal-jobs", response_model=None)
async def start_removal_job(request: Request, api: Console) -> Response:
    form = await request.form()
    chosen = [str(v) for v in form.getlist("forget_request")]
    fields = {k: str(v) for k, v in form.items()} | {"chosen": chosen}
    try:
        params = json.loads(fields.get("params") or "{}")
    except json.JSONDecodeError as exc:
        return await _jobs_page(request, api, 400, fields, f"Parameters are not JSON: {exc}.")
    body = {
        "method": fields.get("method", ""),
        "forget_requests": chosen or "pending",
        "params": params,
        "parent": fields.get("parent") or "latest",
    }
    created = await api.call("POST", "/removal-jobs", body)
    if error := api_error(created):
        return await _jobs_page(request, api, created.status_code, fields, error)
    return _back("/admin/removal-jobs", f"Started {created.json()['id']}.")


@router.post("/removal-jobs/{job_id}/cancel", response_model=None)
async def cancel_removal_job(request: Request, job_id: str, api: Console) -> Response:
    cancelled = await api.call("POST", f"/removal-jobs/{quote(job_id)}/cancel")
    if error := api_error(cancelled):
        return await _jobs_page(request, api, cancelled.status_code, error=error)
    return _back("/admin/removal-jobs", f"Cancelled {job_id}.")


# Model versions and arms


async def _models_page(
    request: Request, api: AdminAPI, status_code: int = 200, error: str | None = None
) -> HTMLResponse:
    versions = await api.call("GET", "/model-versions")
    routing = await api.call("GET", "/routing")
    return _page(
        request,
        "models.html",
        status_code,
        versions=versions.json()["data"],
        routing=routing.json(),
        arms=[arm for arm in ARMS if arm != "baseline"],
        error=error,
    )


@router.get("/models")
async def models(request: Request, api: Console) -> HTMLResponse:
    return await _models_page(request, api)


@router.post("/routing", response_model=None)
async def set_routing(request: Request, api: Console) -> Response:
    form = await request.form()
    weights = {}
    for arm in ARMS:
        text = str(form.get(f"weight_{arm}", "")).strip()
        if text:
            try:
                weights[arm] = float(text)
            except ValueError:
                return await _models_page(request, api, 400, f"Weight of {arm} is not a number.")
    body = {
        "default_arm": str(form.get("default_arm", "suppression")),
        "weights": weights,
        "header": str(form.get("header", "admin")),
        "version": str(form.get("version", "")) or None,
    }
    saved = await api.call("PUT", "/routing", body)
    if error := api_error(saved):
        return await _models_page(request, api, saved.status_code, error)
    return _back("/admin/models", "Routing saved.")


# Results


def _runs(request: Request) -> Path:
    return request.app.state.settings.data_dir / "runs"


@router.get("/results")
async def results(request: Request, _: Console) -> Response:
    found = await asyncio.to_thread(reports, _runs(request))
    if found:
        return RedirectResponse(f"/admin/results/{quote(found[0])}/", status_code=303)
    return _page(request, "results.html", runs=[], current=None, report=None)


@router.get("/results/{path:path}", response_model=None)
async def result(request: Request, path: str, _: Console) -> Response:
    """``<run>/`` is the run's report page; ``<run>/<plot>.png`` one of its plots."""
    runs = _runs(request)
    target = await asyncio.to_thread(report_file, runs, path)
    if target is None:
        raise HTTPException(404, f"No report or plot {path!r}.")
    if target.is_file() and target.suffix == ".png":
        return FileResponse(target, media_type="image/png")
    if not (target / "report.md").is_file():
        raise HTTPException(404, f"No report in {path!r}.")
    run = target.relative_to(runs.resolve()).as_posix()
    # The folder walk and the Markdown rendering leave the event loop.
    report = await asyncio.to_thread(render_report, target)
    found = await asyncio.to_thread(reports, runs)
    return _page(request, "results.html", runs=found, current=run, report=report)


# Live


@router.get("/live")
async def live(request: Request, _: Console) -> HTMLResponse:
    return _page(request, "live.html", live=live_numbers())


@router.get("/live/panel")
async def live_panel(request: Request, _: Console) -> HTMLResponse:
    return _page(request, "live_panel.html", live=live_numbers())
