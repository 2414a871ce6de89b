"""The ``obliviate`` command.

obliviate serve                                  # embedded vLLM + SmolLM2 on 127.0.0.1:8000
obliviate serve --upstream http://gpu-node:8000  # front a running vLLM server
obliviate unlearn --method npo --param steps=30  # a removal job on the pending forget requests

The benchmarks are a command of their own, ``obliviate-eval`` (``evals.cli``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn

from gateway.app import build_app
from gateway.config import Settings, load_settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# How long an idle client connection stays open. Clients pool theirs for 5 s (httpx, and so the
# openai client); with uvicorn's default, also 5 s, the server could close one as a request went
# out on it, and the client got "Server disconnected without sending a response". nginx's default.
KEEP_ALIVE_S = 75
app = typer.Typer(help="obliviate: an OpenAI-compatible gateway that makes a served LLM forget.")


def _help(field: str) -> str:
    info = Settings.model_fields[field]
    return f"{info.description} (env: OBLIVIATE_{field.upper()})"


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """KEY=VALUE options as a dict; VALUE is JSON when it parses (numbers, lists), else text."""
    params: dict[str, Any] = {}
    for item in items or []:
        key, _, value = item.partition("=")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


@app.callback()
def main() -> None:
    """obliviate: an OpenAI-compatible gateway that makes a served LLM forget."""


@app.command()
def serve(
    config: Annotated[
        Path | None,
        typer.Option(
            help="TOML config file; keys are the option names with underscores. "
            "(env: OBLIVIATE_CONFIG)"
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help=_help("host"))] = None,
    port: Annotated[int | None, typer.Option(help=_help("port"))] = None,
    model: Annotated[str | None, typer.Option(help=_help("model"))] = None,
    served_model_name: Annotated[str | None, typer.Option(help=_help("served_model_name"))] = None,
    upstream: Annotated[str | None, typer.Option(help=_help("upstream"))] = None,
    upstream_api_key: Annotated[str | None, typer.Option(help=_help("upstream_api_key"))] = None,
    data_dir: Annotated[Path | None, typer.Option(help=_help("data_dir"))] = None,
    api_key: Annotated[
        list[str] | None, typer.Option(help=_help("api_keys") + " Repeat for several keys.")
    ] = None,
    max_body_bytes: Annotated[int | None, typer.Option(help=_help("max_body_bytes"))] = None,
    database_url: Annotated[str | None, typer.Option(help=_help("database_url"))] = None,
    embedder: Annotated[str | None, typer.Option(help=_help("embedder"))] = None,
    response_style: Annotated[str | None, typer.Option(help=_help("response_style"))] = None,
    vllm_port: Annotated[int | None, typer.Option(help=_help("vllm_port"))] = None,
    vllm_dtype: Annotated[str | None, typer.Option(help=_help("vllm_dtype"))] = None,
    vllm_max_model_len: Annotated[
        int | None, typer.Option(help=_help("vllm_max_model_len"))
    ] = None,
    vllm_kv_cache_gib: Annotated[int | None, typer.Option(help=_help("vllm_kv_cache_gib"))] = None,
    vllm_arg: Annotated[
        list[str] | None, typer.Option(help=_help("vllm_extra_args") + " Repeat for each flag.")
    ] = None,
    vllm_start_timeout_s: Annotated[
        float | None, typer.Option(help=_help("vllm_start_timeout_s"))
    ] = None,
    vllm_max_restarts: Annotated[int | None, typer.Option(help=_help("vllm_max_restarts"))] = None,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "info",
) -> None:
    """Start the gateway (and, unless --upstream is given, the vLLM engine behind it).

    Secrets and the rest of the settings come from the environment or the config file only:
    OBLIVIATE_ADMIN_TOKEN, OBLIVIATE_SUPPRESSION_LAYERS, OBLIVIATE_ABSTAIN_MESSAGE,
    OBLIVIATE_BLOCK_SIMILARITY, OBLIVIATE_GUARD_SIMILARITY, OBLIVIATE_APPROXIMATE_AFTER.
    """
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # One INFO line per upstream call would cost time on every request.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = load_settings(
        config,
        host=host,
        port=port,
        model=model,
        served_model_name=served_model_name,
        upstream=upstream,
        upstream_api_key=upstream_api_key,
        data_dir=data_dir,
        api_keys=api_key or None,
        max_body_bytes=max_body_bytes,
        database_url=database_url,
        embedder=embedder,
        response_style=response_style,
        vllm_port=vllm_port,
        vllm_dtype=vllm_dtype,
        vllm_max_model_len=vllm_max_model_len,
        vllm_kv_cache_gib=vllm_kv_cache_gib,
        vllm_extra_args=vllm_arg or None,
        vllm_start_timeout_s=vllm_start_timeout_s,
        vllm_max_restarts=vllm_max_restarts,
    )
    uvicorn.run(
        build_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=settings.access_log,
        timeout_keep_alive=KEEP_ALIVE_S,
    )


@app.command()
def unlearn(
    method: Annotated[
        str,
        typer.Option(
            help="A method of removal/methods: ga, npo, wga, undial, task_arithmetic, ..."
        ),
    ],
    forget_request: Annotated[
        list[str] | None,
        typer.Option(help="Forget request id to remove (repeatable); default: every pending one."),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE of the method's config (repeatable).")
    ] = None,
    parent: Annotated[str, typer.Option(help="'latest', 'base' or a version id.")] = "latest",
    url: Annotated[str, typer.Option(help="The gateway.")] = "http://127.0.0.1:8000",
    admin_token: Annotated[
        str, typer.Option(envvar="OBLIVIATE_ADMIN_TOKEN", help="The gateway's admin token.")
    ] = "",
) -> None:
    """Run a removal job on a gateway and follow it with a progress bar (Ctrl-C cancels it)."""
    import time

    import httpx
    from tqdm import tqdm

    params = parse_params(param)
    body = {"method": method, "params": params, "parent": parent,
            "forget_requests": forget_request or "pending"}  # fmt: skip
    headers = {"Authorization": f"Bearer {admin_token}"}
    base_url = f"{url.rstrip('/')}/admin/v1"
    # A busy CPU can answer slowly: wait rather than abandon the job.
    with httpx.Client(base_url=base_url, headers=headers, timeout=120) as admin:
        created = admin.post("/removal-jobs", json=body)
        if created.status_code != 202:
            raise typer.BadParameter(created.json()["error"]["message"])
        job = created.json()
        bar = tqdm(total=params.get("steps"), desc=f"{method} {job['id']}", unit="step")
        try:
            while job["status"] in ("queued", "running"):
                time.sleep(1)
                job = admin.get(f"/removal-jobs/{job['id']}").json()
                if progress := job["progress"]:
                    bar.total = progress["total"]
                    bar.update(progress["step"] - bar.n)
                    bar.set_postfix(loss=f"{progress['loss']:.3f}", eta=f"{progress['eta_s']:.0f}s")
        except KeyboardInterrupt:
            job = admin.post(f"/removal-jobs/{job['id']}/cancel").json()
        bar.close()
    typer.echo(f"{job['status']}: {job['model_version'] or job['error'] or ''}")
    if job["status"] != "succeeded":
        raise typer.Exit(1)


evidence = typer.Typer(help="The evidence of forget requests (a hash-chained record).")
app.add_typer(evidence, name="evidence")


@evidence.command("verify")
def verify_evidence(
    config: Annotated[
        Path | None, typer.Option(help="TOML config file (as `serve` reads).")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help=_help("data_dir"))] = None,
    database_url: Annotated[str | None, typer.Option(help=_help("database_url"))] = None,
) -> None:
    """Check every entry of the evidence chain; exit 1 naming each row that was changed or
    deleted, 0 when the store is untouched."""
    from sqlalchemy import create_engine, inspect

    from gateway.evidence.store import EvidenceLog

    settings = load_settings(config, data_dir=data_dir, database_url=database_url)
    engine = create_engine(settings.store_url)  # read as found: nothing is migrated here
    if "evidence" not in inspect(engine).get_table_names():
        typer.echo(f"no evidence in {settings.store_url}", err=True)
        raise typer.Exit(2)
    log = EvidenceLog(engine)
    problems = log.verify()
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"evidence verified: chain head {log.head()}")
