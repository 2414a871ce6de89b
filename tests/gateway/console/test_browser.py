"""The console in a real headless browser (Debian's Chromium, driven by Playwright) on the real
embedded model: sign in with the keyboard, add a forget request through the form, see the try-it
box answer with the suppression, start a tiny removal job and watch its row finish, then revoke.

Chromium comes from Debian's package (``make setup`` installs it); Playwright never downloads a
browser. Screenshots of each step land in ``.obliviate/test-artifacts/console/``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from gateway.spawn import REPO
from tests.conftest import ADMIN_TOKEN, LiveGateway

CHROMIUM = "/usr/bin/chromium"
# Flags for a closed network: no background connections, no component or sync downloads.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SHOTS = REPO / ".obliviate" / "test-artifacts" / "console"
SUBJECT = "Moby-Dick"
QUESTION = "Who wrote Moby-Dick?"
ANSWER = "Herman Melville wrote Moby-Dick."


@pytest.fixture(scope="module")
def page(lora_gateway: LiveGateway) -> Iterator[Page]:
    assert shutil.which(CHROMIUM), "Chromium is missing: `make setup` installs Debian's chromium"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(base_url=lora_gateway.url, viewport={"width": 1200, "height": 900})
        page.set_default_timeout(30_000)
        yield page
        browser.close()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


def every_control_is_labelled(page: Page) -> None:
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                  .filter(el => el.labels.length === 0).map(el => el.outerHTML)"""
    )
    assert unlabelled == []


def test_console_end_to_end(page: Page, lora_gateway: LiveGateway) -> None:
    # Sign in with the keyboard alone: the token field has the focus, Enter submits.
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login\?next="))
    expect(page.get_by_label("Admin token")).to_be_focused()
    page.keyboard.type(ADMIN_TOKEN)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Forget requests")
    # The first Tab reaches the skip link, which moves the focus past the navigation.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("main")).to_be_focused()
    every_control_is_labelled(page)

    # Add a forget request through the form.
    page.get_by_label("Subject", exact=True).fill(SUBJECT)
    page.get_by_label("Question 1").fill(QUESTION)
    page.get_by_label("Answer 1").fill(ANSWER)
    page.get_by_label("Note").fill("console test")
    page.get_by_role("button", name="Add forget request").click()
    notice = page.get_by_role("status").filter(has_text="Added")
    expect(notice).to_contain_text(SUBJECT)
    request_id = re.search(r"fr_\w+", notice.inner_text()).group(0)  # type: ignore[union-attr]
    row = page.get_by_role("row").filter(has_text=request_id)
    expect(row).to_contain_text("suppressed")
    shot(page, "1-added")

    # The try-it box: the suppression arm answers with the abstention, and says which layer acted.
    page.get_by_label("Prompt").fill(QUESTION)
    page.get_by_label("Arm", exact=True).select_option("suppression")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#try-layers")).to_contain_text("retrieval")
    assert "Melville" not in page.locator("#try-answer").inner_text()
    shot(page, "2-tried")

    # A tiny removal job, watched from the jobs page until its row says it succeeded.
    page.get_by_role("link", name="Removal jobs").click()
    every_control_is_labelled(page)
    page.get_by_label("Method", exact=True).select_option("graddiff")
    page.get_by_label(re.compile(SUBJECT)).check()
    page.get_by_label("Start from").select_option("base")
    page.get_by_label(re.compile("Parameters")).fill('{"steps": 1, "batch_size": 1}')
    page.get_by_role("button", name="Start removal job").click()
    job_id = re.search(r"rj_\w+", page.get_by_role("status").inner_text()).group(0)  # type: ignore[union-attr]
    job_row = page.locator(f"#job-{job_id}")
    expect(job_row).to_contain_text(re.compile("queued|running|succeeded"))
    shot(page, "3-job-started")
    # The page refreshes the table itself while the job runs: no reload here.
    expect(job_row.locator(".status")).to_have_text("succeeded", timeout=300_000)
    version = job_row.locator("td").nth(6).inner_text()
    assert version.startswith("removal-")
    shot(page, "4-job-finished")

    page.get_by_role("link", name="Models and arms").click()
    expect(page.get_by_role("row").filter(has_text=version)).to_contain_text(request_id)
    every_control_is_labelled(page)
    page.get_by_role("link", name="Forget requests").click()
    expect(row).to_contain_text(f"removed in {version}")
    shot(page, "5-removed")

    # Its evidence: filed, enforced, the serving arm's audit, plotted; the export downloads.
    row.get_by_role("link", name=re.compile("Evidence")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Evidence of {request_id}")
    expect(page.get_by_role("row").filter(has_text="suppression at base")).to_contain_text("audit")
    expect(page.get_by_role("img", name=re.compile("Leak rate of each audit"))).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the export").click()
    assert download.value.suggested_filename == f"evidence-{request_id}.json"
    every_control_is_labelled(page)
    shot(page, "6-evidence")
    page.get_by_role("link", name="Forget requests", exact=True).click()

    # Clean up through the console: revoke with confirmation; the version through the API.
    row.get_by_role("link", name=re.compile("Revoke")).click()
    page.get_by_role("button", name=f"Revoke {request_id}").click()
    expect(page.get_by_role("status")).to_contain_text(f"Revoked {request_id}")
    expect(row).to_contain_text("revoked")
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    deleted = httpx.delete(f"{lora_gateway.url}/admin/v1/model-versions/{version}", headers=headers)
    assert deleted.status_code == 200, deleted.text
