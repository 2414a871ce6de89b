"""Evidence end to end on the real embedded model, through HTTP: a TOFU author's forget request
is audited on the serving arm within a minute, its record shows who filed it and holds no
forgotten text in clear, a copy of the store edited by hand fails `obliviate evidence verify`,
and a hard delete leaves no text or embedding behind while the chain still verifies."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from evals.data import load_subjects
from tests.conftest import ADMIN_TOKEN, AUDITS, MODEL, TOFU, LiveGateway, live_gateway


@pytest.fixture(scope="module")
def audited(
    gateway: LiveGateway, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveGateway]:
    with live_gateway(tmp_path_factory.mktemp("evidence"), AUDITS, upstream=gateway) as live:
        yield live


def tofu_author(index: int) -> dict:
    """A TOFU author's forget request: the name and four QA pairs."""
    subject = load_subjects([TOFU / "forget_authors.jsonl"])[index]
    qa = [{"question": pair.question, "answer": pair.answer} for pair in subject.qa[:4]]
    return {"subject": subject.name, "qa": qa}


def evidence(admin: httpx.Client, request_id: str, kind: str, timeout_s: float) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        entries = admin.get(f"/forget-requests/{request_id}/evidence").json().get("entries", [])
        if any(e["kind"] == kind for e in entries):
            return entries
        time.sleep(0.5)
    raise TimeoutError(f"no {kind} entry for {request_id} in {timeout_s} s")


def verify(database: Path) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "obliviate"), "evidence", "verify",
               "--database-url", f"sqlite:///{database}"]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def copy_of_store(live: LiveGateway, to: Path) -> Path:
    """A consistent copy of the running gateway's SQLite store (its WAL included)."""
    with sqlite3.connect(live.data_dir / "forget.db") as source, sqlite3.connect(to) as copy:
        source.backup(copy)
    return to


def test_a_filed_request_is_audited_on_the_serving_arm(
    audited: LiveGateway, tmp_path: Path
) -> None:
    author = tofu_author(0)
    with audited.admin() as admin:
        started = time.monotonic()
        created = admin.post("/forget-requests", json=author, headers={"Idempotency-Key": "k-1"})
        assert created.status_code == 201
        request_id = created.json()["id"]
        entries = evidence(admin, request_id, "audit", timeout_s=60)
        took = time.monotonic() - started
        export = admin.get(f"/forget-requests/{request_id}/evidence/export")
        metrics = httpx.get(f"{audited.url}/metrics").text
    kinds = [e["kind"] for e in entries]
    assert kinds[:2] == ["filed", "enforced"] and "audit" in kinds, kinds
    filed = entries[0]["data"]
    assert filed["admin_token"] == hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()[:16]
    assert filed["idempotency_key"] == hashlib.sha256(b"k-1").hexdigest()
    audit = next(e["data"] for e in entries if e["kind"] == "audit")
    assert (audit["arm"], audit["version"], audit["questions"]) == ("suppression", "base", 6)
    assert audit["leaks"] == 0 and audit["interval"][0] == 0.0, audit
    assert "retrieval" in audit["layers"]  # the stack acted on the probes
    families = {p["family"] for p in audit["probes"]}
    assert {"direct", "jailbreak", "roleplay"} <= families
    print(f"audit recorded {took:.1f} s after filing")
    # No forgotten text in clear: not the subject, not a question, not an answer.
    recorded = json.dumps(entries)
    for text in [author["subject"], *(t for pair in author["qa"] for t in pair.values())]:
        assert text not in recorded
    assert export.status_code == 200 and "attachment" in export.headers["content-disposition"]
    assert export.json()["signature"] is None  # no key configured
    assert 'obliviate_audits_total{arm="suppression"}' in metrics
    assert 'obliviate_audit_leak_rate{arm="suppression"} 0.0' in metrics

    untouched = verify(copy_of_store(audited, tmp_path / "copy.db"))
    assert untouched.returncode == 0, untouched.stderr
    with sqlite3.connect(tmp_path / "copy.db") as db:
        (seq,) = db.execute("SELECT seq FROM evidence WHERE kind = 'audit' LIMIT 1").fetchone()
        db.execute("UPDATE evidence SET data = json_set(data, '$.leaks', 0) WHERE seq = ?", (seq,))
        db.execute("UPDATE evidence SET data = json_set(data, '$.leak_rate', 0.5) WHERE seq = ?",
                   (seq,))  # fmt: skip
    edited = verify(tmp_path / "copy.db")
    assert edited.returncode == 1 and f"row {seq} (audit of {request_id})" in edited.stderr


def test_a_hard_delete_leaves_no_text_and_the_chain_verifies(
    audited: LiveGateway, tmp_path: Path
) -> None:
    author = tofu_author(1)
    with audited.admin() as admin:
        request_id = admin.post("/forget-requests", json=author).json()["id"]
        assert admin.post(f"/forget-requests/{request_id}/purge").json()["purged"] is True
        assert admin.get(f"/forget-requests/{request_id}").status_code == 404
        assert admin.post(f"/forget-requests/{request_id}/purge").status_code == 404
        entries = admin.get(f"/forget-requests/{request_id}/evidence").json()["entries"]
    assert [e["kind"] for e in entries][-1] == "purged"
    store = copy_of_store(audited, tmp_path / "copy.db")
    with sqlite3.connect(store) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            rows = json.dumps(db.execute(f"SELECT * FROM {table}").fetchall(), default=repr)
            for pair in author["qa"]:
                assert pair["answer"] not in rows, table
        for table in ("forget_requests", "chunks", "evidence_salts"):
            column = "id" if table == "forget_requests" else "request_id"
            found = db.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", (request_id,))
            assert not found.fetchall(), table  # its text, its embeddings, its digests' salt
    assert verify(store).returncode == 0
    # Nothing enforces it any more: the index forgot it too.
    reply = audited.client().chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": author["qa"][1]["question"]}],
        max_tokens=4, temperature=0,
    )  # fmt: skip
    assert "retrieval" not in reply.headers.get("x-obliviate-layers", "")
