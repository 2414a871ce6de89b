"""Benchmark helpers around a live gateway: one beside its vLLM, its metrics, filler requests.

url, vllm_url, process = start_beside_vllm("admin-token")
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import httpx

from gateway.engine.launcher import free_port
from gateway.spawn import NO_AUDITS, fresh_data_dir, start_gateway


def start_beside_vllm(
    admin_token: str, data_dir: Path | None = None, env: dict[str, str] | None = None
) -> tuple[str, str, subprocess.Popen]:
    """A gateway and its embedded vLLM, both reachable, on ``data_dir`` (default: a new one), for
    benchmarks that compare the two; (gateway URL, vLLM URL, gateway process). ``env`` adds
    variables (its suppression layers)."""
    vllm_port = free_port()
    work = Path(tempfile.mkdtemp())
    log = work / "gateway.log"
    print(f"starting gateway + vLLM (log {log}) ...", flush=True)
    url, process = start_gateway(
        log, "--vllm-port", str(vllm_port), "--data-dir",
        str(fresh_data_dir(data_dir or work / "data")),
        env={"OBLIVIATE_ADMIN_TOKEN": admin_token, **NO_AUDITS, **(env or {})},
    )  # fmt: skip
    return url, f"http://127.0.0.1:{vllm_port}", process


def metric(url: str, name: str) -> float:
    """The value of an unlabelled metric in the gateway's ``/metrics``."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    found = re.search(rf"^{name} (\S+)", text, re.MULTILINE)
    if found is None:
        raise KeyError(f"{name} not in {url}/metrics")
    return float(found.group(1))


def file_forget_requests(url: str, admin_token: str, count: int) -> None:
    """File synthetic forget requests until the gateway enforces ``count`` (a gateway on a kept
    data dir resumes). They are unrelated to the benchmarks' prompt: a related one would put
    every stream on the sentence-by-sentence release of related conversations."""
    have = int(metric(url, "obliviate_forget_index_requests"))
    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=f"{url}/admin/v1", headers=headers, timeout=120) as admin:
        for i in range(have, count):
            body = {"subject": f"Velmora Quist {i}", "documents": [f"Velmora Quist {i} measured "
                    f"the lattice constant of alloy {i % 97} at {i % 13} kelvin."]}  # fmt: skip
            admin.post("/forget-requests", json=body).raise_for_status()
