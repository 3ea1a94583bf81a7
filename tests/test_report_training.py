"""The demonstration notice with stand-in specialists: which specialists it names, the web page, and
that weights from real datasets (or mixed panels) are described as they are."""

from __future__ import annotations

import pytest
from detect_fakes import fake_extract, fake_runners
from fastapi.testclient import TestClient
from video_factory import VideoSpec, make_video

from dfpanel.detect.pipeline import DetectConfig, PanelDetector
from dfpanel.panel.combiner import Panel
from dfpanel.report.html import render_html
from dfpanel.report.schema import REPORT_VERSION, ReportSchemaError, validate_report
from dfpanel.serve.app import ServeConfig, create_app


def detector(**kinds: str) -> PanelDetector:
    """Stand-in panel whose weights say they learned from `kinds[name]` (synthetic / real / absent)."""
    runners = fake_runners()
    for r in runners:
        if r.name in kinds:
            r.weights_info = dict(r.weights_info, training_data=kinds[r.name], datasets=["ffpp"])
    return PanelDetector(runners, Panel(), DetectConfig(clip_len=4), extract=fake_extract)


@pytest.fixture(scope="module")
def video_bytes(tmp_path_factory) -> bytes:
    return make_video(tmp_path_factory.mktemp("t") / "clip.mp4", VideoSpec(seconds=0.6, size=(160, 120),
                                                                         face_height=60)).read_bytes()


def test_the_notice_names_every_synthetic_specialist_and_only_those(tmp_path, video_bytes):
    video = tmp_path / "talk.mp4"
    video.write_bytes(video_bytes)
    r = validate_report(detector(bg="synthetic", cm="synthetic", av="real").analyse(video).report)
    td = r["training_data"]
    assert td["demonstration"] and td["synthetic_only"] == ["bg", "cm"] and td["real"] == ["av"]
    assert td["unknown"] == ["tm"] and "TM" in td["note"]
    assert "BG, CM specialists learned only from synthetic" in td["notice"]
    page = render_html(r)
    assert page.index("Demonstration only") < page.index("<h1>") and "Training data unknown for TM" in page


def test_a_failed_video_keeps_the_field_but_shows_no_verdict_banner(tmp_path):
    bad = tmp_path / "noface.mp4"
    bad.write_bytes(b"x")
    r = validate_report(detector(bg="synthetic").fail(bad, "corrupt", "unreadable").report)
    assert r["training_data"]["demonstration"] and 'class="demo"' not in render_html(r)


def test_report_version_2_requires_training_data(tmp_path, video_bytes):
    video = tmp_path / "talk.mp4"
    video.write_bytes(video_bytes)
    r = detector().analyse(video).report
    assert REPORT_VERSION == 2 and r["version"] == 2
    r.pop("training_data")
    with pytest.raises(ReportSchemaError, match="missing 'training_data'"):
        validate_report(r)
    with pytest.raises(ReportSchemaError, match="version 1 is not supported"):
        validate_report({**r, "version": 1})


@pytest.mark.parametrize("kinds, banner", [({"bg": "synthetic", "cm": "real", "av": "real", "tm": "real"}, True),
                                           ({"bg": "real", "cm": "real", "av": "real", "tm": "real"}, False)])
def test_the_web_page_says_when_verdicts_are_demonstrations(tmp_path, video_bytes, kinds, banner):
    from serve_helpers import wait_for

    with TestClient(create_app(detector(**kinds), ServeConfig(data_dir=tmp_path / "work"))) as c:
        home = c.get("/").text
        assert ('class="demo"' in home) is banner
        if banner:
            assert home.index('class="demo"') < home.index("<h1") and "not evidence about a real video" in home
        jid = c.post("/api/v1/jobs", files={"file": ("talk.mp4", video_bytes, "video/mp4")}).json()["id"]
        report = wait_for(c, jid)["report"]
        assert report["training_data"]["demonstration"] is banner
        assert (report["training_data"]["notice"] is not None) is banner
        assert ('class="demo"' in c.get(f"/jobs/{jid}").text) is banner
        assert ('class="demo"' in c.get(f"/api/v1/jobs/{jid}/report.html").text) is banner
