"""The console's pages over plain HTTP: sign-in, refusals, form errors, reports and live numbers.

They run on the session's gateway (real vLLM, SmolLM2); the browser flow is in test_browser.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, LiveGateway

PAGES = ["forget-requests", "removal-jobs", "models", "results", "live", "live/panel"]


@pytest.fixture
def console(gateway: LiveGateway) -> Iterator[httpx.Client]:
    """A signed-in console session (its cookie)."""
    with httpx.Client(base_url=f"{gateway.url}/admin", timeout=60) as http:
        signed = http.post("/login", data={"token": ADMIN_TOKEN, "next": "/admin/live"})
        assert signed.status_code == 303 and signed.headers["location"] == "/admin/live"
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/admin" in cookie
        yield http


def test_pages_need_sign_in(gateway: LiveGateway) -> None:
    with httpx.Client(base_url=f"{gateway.url}/admin") as http:
        for page in PAGES:
            response = http.get(f"/{page}")
            assert response.status_code == 303, page
            assert response.headers["location"] == f"/admin/login?next=/admin/{page}"
        assert http.post("/login", data={"token": "wrong"}).status_code == 401
        # Elsewhere after sign-in is refused: only console pages (no open redirect).
        signed = http.post("/login", data={"token": ADMIN_TOKEN, "next": "//evil.example/x"})
        assert signed.headers["location"] == "/admin/forget-requests"
        http.cookies.set("obliviate_console", "forged", path="/admin")
        assert http.get("/models").status_code == 303


def test_every_page_renders(console: httpx.Client) -> None:
    for page in PAGES:
        response = console.get(f"/{page}", follow_redirects=True)
        assert response.status_code == 200, (page, response.text[:500])
        assert "text/html" in response.headers["content-type"]
    for asset in ("console.css", "console.js"):
        assert console.get(f"/static/{asset}").status_code == 200
    assert console.get("/static/../app.py").status_code == 404


def test_cross_site_posts_are_refused(console: httpx.Client) -> None:
    form = {"subject": "Cross Site"}
    refused = console.post(
        "/forget-requests", data=form, headers={"Origin": "https://evil.example"}
    )
    assert refused.status_code == 403 and "Cross-site" in refused.json()["error"]["message"]
    found = console.get("/forget-requests", params={"q": "Cross Site"})
    assert "No forget requests match." in found.text


def test_a_refused_form_keeps_what_was_typed(console: httpx.Client) -> None:
    """An API refusal comes back as the form with the API's message and the typed values."""
    form = {"subject": "", "concepts": "", "note": "ticket 7", "question": "Q only?", "answer": ""}
    refused = console.post("/forget-requests", data=form)
    assert refused.status_code == 400
    assert 'role="alert"' in refused.text and "answer" in refused.text
    assert 'value="ticket 7"' in refused.text and 'value="Q only?"' in refused.text
    # Without LoRA this gateway cannot run removal jobs: the API's reason is shown.
    job = console.post("/removal-jobs", data={"method": "npo", "params": '{"steps": 1}'})
    assert job.status_code == 409 and "vllm_lora" in job.text
    bad = console.post("/removal-jobs", data={"method": "npo", "params": "{steps"})
    assert bad.status_code == 400 and "not JSON" in bad.text and "{steps" in bad.text


def test_results_show_reports_and_plots(gateway: LiveGateway, console: httpx.Client) -> None:
    run = gateway.data_dir / "runs" / "nightly"
    run.mkdir(parents=True)
    (run / "report.md").write_text(
        "# Run\n\n| system | leak |\n|---|---|\n| stack | 0.00 |\n\n"
        "<script>alert(1)</script>\n\n![summary](summary.png)\n"
    )
    (run / "summary.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    page = console.get("/results", follow_redirects=True)
    assert page.url.path == "/admin/results/nightly/"
    assert "<table>" in page.text and "<td>stack</td>" in page.text
    assert "<script>alert" not in page.text  # report text is escaped
    assert '<img alt="summary" src="summary.png"' in page.text
    plot = console.get("/results/nightly/summary.png")
    assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
    assert console.get("/results/nightly/../../forget.db").status_code == 404
    assert console.get("/results/missing/").status_code == 404


def test_live_numbers_follow_metrics(gateway: LiveGateway, console: httpx.Client) -> None:
    def arm_count(text: str) -> int:
        match = re.search(r"<td>suppression</td><td>(\d+)</td>", text)
        return int(match.group(1)) if match else 0

    before = arm_count(console.get("/live/panel").text)
    with gateway.http() as http:
        body = {"model": "smollm2-135m-instruct", "prompt": "Hi", "max_tokens": 1}
        assert http.post("/v1/completions", json=body).status_code == 200
    panel = console.get("/live/panel").text
    assert arm_count(panel) == before + 1
    assert "/v1/completions" in panel and "vLLM</dt><dd>ready" in panel
