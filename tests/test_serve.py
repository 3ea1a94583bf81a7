"""The local web app: page, upload -> detection -> report, errors, no path tricks."""

from __future__ import annotations

import pytest
from detect_fakes import fake_extract, fake_runners
from fastapi.testclient import TestClient
from video_factory import VideoSpec, make_video

from dfpanel.detect.pipeline import DetectConfig, PanelDetector
from dfpanel.panel.combiner import Panel
from dfpanel.report.schema import validate_report
from dfpanel.serve.app import create_app


@pytest.fixture(scope="module")
def video_bytes(tmp_path_factory) -> bytes:
    path = make_video(tmp_path_factory.mktemp("s") / "clip.mp4", VideoSpec(seconds=0.6, size=(160, 120), face_height=60))
    return path.read_bytes()


@pytest.fixture
def client(tmp_path):
    det = PanelDetector(fake_runners(), Panel(), DetectConfig(clip_len=4), extract=fake_extract)
    return TestClient(create_app(det, tmp_path / "work")), tmp_path / "work"


def test_page_has_a_drop_zone_and_no_external_assets(client):
    c, _ = client
    page = c.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="drop"' in page.text and 'enctype="multipart/form-data"' in page.text
    assert "BG, CM, AV, TM" in page.text and "http://" not in page.text and "https://" not in page.text
    assert c.get("/healthz").json() == {"ok": True, "specialists": ["bg", "cm", "av", "tm"], "panel_fitted": False}


def test_upload_runs_detection_and_serves_the_report(client, video_bytes):
    c, work = client
    res = c.post("/api/detect", files={"file": ("talk.mp4", video_bytes, "video/mp4")})
    assert res.status_code == 200
    body = res.json()
    assert body["status"] == "analysed" and body["verdict"] in ("real", "fake", "uncertain")
    assert 0 <= body["probability"] <= 1 and body["name"] == "talk.mp4"
    html = c.get("/" + body["report_url"])
    assert html.status_code == 200 and "<svg" in html.text and "talk.mp4" in html.text
    report = validate_report(c.get("/" + body["json_url"]).json())
    assert report["panel"]["probability"] == pytest.approx(body["probability"])
    assert (work / body["id"] / "upload" / "talk.mp4").read_bytes() == video_bytes
    # it is listed on the page afterwards
    assert f'href="reports/{body["id"]}"' in c.get("/").text


def test_form_upload_redirects_to_the_report(client, video_bytes):
    c, _ = client
    res = c.post("/detect", files={"file": ("silent.mp4", video_bytes, "video/mp4")}, follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"].startswith("reports/")
    page = c.get("/" + res.headers["location"]).text
    assert "abstained: no audio track" in page


def test_bad_uploads_are_reported_not_crashes(client, tmp_path):
    c, work = client
    res = c.post("/api/detect", files={"file": ("../../evil.mp4", b"not a video at all", "video/mp4")})
    assert res.status_code == 200
    body = res.json()
    assert body["status"] == "failed" and body["reason"]
    assert not (tmp_path / "evil.mp4").exists() and (work / body["id"] / "upload" / "evil.mp4").exists()
    assert "not analysed" in c.get("/" + body["report_url"]).text
    assert c.post("/api/detect", files={"file": ("empty.mp4", b"", "video/mp4")}).status_code == 400
    assert c.get("/reports/..%2F..%2Fetc").status_code == 404
    assert c.get("/reports/0123456789ab").status_code == 404


def test_serve_command_refuses_missing_weights_before_listening(tmp_path, capsys):
    from dfpanel.cli import main

    assert main(["serve", "--weights", str(tmp_path / "nope"), "--port", "0"]) == 2
    assert "weights folder not found" in capsys.readouterr().err
