"""The web service in a real headless Chromium (Playwright driving Debian's chromium): drop a video on
the page, watch its progress, read the verdict, delete it; the same without JavaScript; the login page.

`make test` installs chromium and sets DFPANEL_REQUIRE_BROWSER=1, so in CI a missing browser fails
these tests instead of skipping them.
"""

from __future__ import annotations

import base64
import os
import re
import shutil

import pytest
from serve_helpers import GatedDetector, LiveServer, make_app
from video_factory import VideoSpec, make_video

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def _chromium() -> str | None:
    return os.environ.get("DFPANEL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        exe = None
    if exe is None:
        why = "needs Debian's chromium and the playwright package (make test installs both)"
        if os.environ.get("DFPANEL_REQUIRE_BROWSER"):
            pytest.fail(f"browser test required but not runnable: {why}")
        pytest.skip(why)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("v") / "interview.mp4",
                      VideoSpec(seconds=0.6, size=(160, 120), face_height=60))


def _watch_console(page) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


def test_drop_a_video_watch_it_analysed_read_the_verdict_and_delete_it(browser, video, tmp_path):
    det = GatedDetector(stage="", delay=0.25)  # each step takes a moment, so the page shows it happening
    with LiveServer(make_app(tmp_path / "data", detector=det)) as srv:
        page = browser.new_page(viewport={"width": 1100, "height": 1300})
        problems = _watch_console(page)  # a CSP violation (e.g. a script without the nonce) shows up here
        page.goto(srv.url + "/")
        assert page.get_by_text("Drop a video here").is_visible()
        # drag and drop: a File in a DataTransfer, dropped on the zone as a user's drop would be
        data = base64.b64encode(video.read_bytes()).decode()
        page.evaluate("""([name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, {type: 'video/mp4'}));
            const zone = document.getElementById('drop');
            for (const type of ['dragenter', 'dragover', 'drop'])
                zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
        }""", [video.name, data])
        page.wait_for_url(re.compile(r".*/jobs/[A-Za-z0-9_-]{24}$"), timeout=20_000)
        seen = set()
        for _ in range(200):  # the progress text as the page shows it, until the report replaces it
            if page.locator(".badge").count():
                break
            stage = page.locator("#stage")
            if stage.count():
                seen.add(stage.inner_text())
            page.wait_for_timeout(100)
        page.wait_for_selector(".badge", timeout=20_000)
        assert any(s.startswith("scoring ") for s in seen), seen
        assert page.locator(".badge").inner_text().lower() in ("real", "fake", "uncertain")
        assert page.get_by_role("heading", name="interview.mp4").is_visible()
        assert page.locator(".thumbs img").count() > 0 and page.locator("svg").count() >= 2
        shot = tmp_path / "serve.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        # back on the upload page the video is listed for this browser, and Delete removes it
        page.get_by_role("link", name="← All your videos").click()
        assert page.get_by_role("link", name="interview.mp4").is_visible()
        page.get_by_role("button", name="Delete").click()
        page.wait_for_load_state()
        assert page.get_by_role("link", name="interview.mp4").count() == 0
        assert not list((tmp_path / "data" / "jobs").iterdir())
        assert problems == []
        page.close()


def test_a_refused_file_says_why_on_the_page(browser, tmp_path):
    with LiveServer(make_app(tmp_path / "data")) as srv:
        page = browser.new_page()
        page.goto(srv.url + "/")
        note = tmp_path / "notes.txt"
        note.write_text("not a video")
        page.set_input_files("#file", str(note))  # the file chooser path
        page.wait_for_selector("#status:has-text('Not accepted')")
        assert "notes.txt is not a video" in page.locator("#status").inner_text()
        page.close()


def test_the_page_works_without_javascript(browser, video, tmp_path):
    with LiveServer(make_app(tmp_path / "data", detector=GatedDetector(stage="", delay=0.2))) as srv:
        ctx = browser.new_context(java_script_enabled=False)
        page = ctx.new_page()
        page.goto(srv.url + "/")
        page.set_input_files("input[name=file]", str(video))
        page.get_by_role("button", name="Analyse").click()
        page.wait_for_url(re.compile(r".*/jobs/.*"))
        page.wait_for_selector(".badge", timeout=30_000)  # the progress page refreshed itself until done
        assert page.get_by_role("heading", name="interview.mp4").is_visible()
        ctx.close()


def test_with_a_token_the_browser_logs_in_once(browser, video, tmp_path):
    token = "browser-test-token-123"
    with LiveServer(make_app(tmp_path / "data", token=token)) as srv:
        ctx = browser.new_context()
        page = ctx.new_page()
        page.goto(srv.url + "/")
        assert "/login" in page.url
        page.fill("input[type=password]", "not-the-token")
        page.get_by_role("button", name="Log in").click()
        assert page.get_by_text("Wrong token.").is_visible()
        page.fill("input[type=password]", token)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(srv.url + "/")
        assert page.get_by_text("Drop a video here").is_visible()
        page.set_input_files("#file", str(video))  # the page's upload carries the login cookie
        page.wait_for_url(re.compile(r".*/jobs/.*"))
        page.wait_for_selector(".badge", timeout=30_000)
        ctx.close()


def test_the_api_docs_render_from_local_files(browser, tmp_path):
    with LiveServer(make_app(tmp_path / "data")) as srv:
        page = browser.new_page()
        problems = _watch_console(page)
        page.goto(srv.url + "/docs")
        page.wait_for_selector(".opblock", timeout=20_000)  # Swagger UI read /openapi.json (OpenAPI 3.1)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert "/api/v1/jobs" in paths and "/api/v1/jobs/{job_id}" in paths
        assert problems == []
        page.close()


def test_the_list_of_your_videos_follows_a_running_job(browser, video, tmp_path):
    det = GatedDetector(stage="scoring CM")
    with LiveServer(make_app(tmp_path / "data", detector=det)) as srv:
        page = browser.new_page()
        problems = _watch_console(page)
        page.goto(srv.url + "/")
        page.set_input_files("#file", str(video))
        page.wait_for_url(re.compile(r".*/jobs/.*"))
        assert det.reached.wait(20)
        page.goto(srv.url + "/")
        page.wait_for_selector("[data-live]:has-text('scoring CM')", timeout=10_000)  # kept current by the script
        det.go.set()
        page.wait_for_selector("td:has-text('%') b", timeout=20_000)  # reloaded once done: the verdict, in bold
        assert page.locator("[data-live]").count() == 0
        assert problems == []
        page.close()
