"""report.json schema, report.html (self-contained, shows what the report says), summary table."""

from __future__ import annotations

import copy
import csv
import html
import json
import re
import shutil

import pytest
from detect_fakes import fake_extract, fake_runners
from video_factory import VideoSpec, make_video

from dfpanel.detect.pipeline import DetectConfig, PanelDetector
from dfpanel.panel.combiner import Panel
from dfpanel.report.html import render_html
from dfpanel.report.schema import (
    REPORT_SCHEMA,
    REPORT_VERSION,
    ReportSchemaError,
    validate_report,
)
from dfpanel.report.summary import summary_row, write_summary
from dfpanel.report.write import write_report


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    d = tmp_path_factory.mktemp("r")
    clip = make_video(d / "clip.mp4", VideoSpec(seconds=0.6, size=(160, 120), face_height=60))
    det = PanelDetector(fake_runners(), Panel(), DetectConfig(clip_len=4), extract=fake_extract)
    res = {}
    for name in ("silent.mp4", "noface.mp4", "<i>odd & name.mp4"):
        shutil.copy(clip, d / name)
        res[name] = det.analyse(d / name)
    return res


def test_report_is_valid_json_with_the_issue_fields(outcomes):
    r = outcomes["silent.mp4"].report
    back = json.loads(json.dumps(r, allow_nan=False))
    assert validate_report(back) is back
    assert back["version"] == REPORT_VERSION and back["kind"] == "dfpanel.report"
    assert back["verdict"] in ("real", "fake", "uncertain")
    assert set(REPORT_SCHEMA["required"]) <= set(back)
    assert {"probability", "threshold", "margin"} <= set(back["panel"])
    assert back["faces"]["frames"] == 12 and back["faces"]["detected_frames"] == 6


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda r: r.pop("verdict"), "missing 'verdict'"),
        (lambda r: r.__setitem__("verdict", "maybe"), "$.verdict"),
        (lambda r: r["panel"].__setitem__("probability", 1.5), "$.panel.probability"),
        (lambda r: r["specialists"][1].__setitem__("logit", float("nan")), "$.specialists[1].logit: NaN"),
        (lambda r: r["specialists"][0]["samples"][0].__setitem__("frame", "3"), "$.specialists[0].samples[0].frame"),
        (lambda r: r["timings"].__setitem__("views", "fast"), "$.timings.views"),
        (lambda r: r["specialists"][2].__setitem__("status", "skipped"), "$.specialists[2].status"),
    ],
)
def test_schema_rejects_broken_reports_naming_the_field(outcomes, mutate, where):
    r = copy.deepcopy(outcomes["silent.mp4"].report)
    mutate(r)
    with pytest.raises(ReportSchemaError, match=re.escape(where)):
        validate_report(r, source="x/report.json")


def test_schema_refuses_another_version_with_advice(outcomes):
    r = copy.deepcopy(outcomes["silent.mp4"].report)
    r["version"] = REPORT_VERSION + 1
    with pytest.raises(ReportSchemaError, match="upgrade dfpanel"):
        validate_report(r)


def test_html_is_self_contained_and_shows_the_report(outcomes, tmp_path):
    o = outcomes["silent.mp4"]
    json_path, html_path = write_report(o.report, tmp_path, o.thumbnails)
    page = html_path.read_text()
    assert json.loads(json_path.read_text()) == o.report
    # nothing fetched from anywhere: no scripts, stylesheets or remote/relative resources
    assert "<script" not in page and "<link" not in page and "url(" not in page
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert page.count("data:image/png;base64,") == len(o.thumbnails)
    assert page.count("<svg") == 2  # bars + timeline
    for s in o.report["specialists"]:
        assert s["title"] in page
    assert "abstained: no audio track" in page
    assert o.report["verdict"] in page
    # one marker per suspicious moment on the timeline
    assert page.count('class="moment"') == len(o.report["timeline"]["moments"])
    # the panel's bar comes first, at the panel's probability
    assert re.search(r'>Panel</text><rect x="230" y="11" width="([\d.]+)"', page).group(1) == \
        f"{700 * o.report['panel']['probability']:.1f}"
    for line in o.report["explanation"]:
        assert html.escape(line) in page


def test_html_escapes_names_and_shows_failure_reason(outcomes):
    odd = render_html(outcomes["<i>odd & name.mp4"].report)
    assert "<i>odd" not in odd and "&lt;i&gt;odd &amp; name.mp4" in odd
    failed = render_html(outcomes["noface.mp4"].report)
    assert "not analysed" in failed and "no face found" in failed and "<svg" not in failed


def test_summary_csv_and_html(outcomes, tmp_path):
    rows = [summary_row(o.report, name.split(".")[0]) for name, o in outcomes.items()]
    csv_path, html_path = write_summary(rows, tmp_path)
    got = list(csv.DictReader(open(csv_path)))
    assert [g["video"] for g in got] == list(outcomes)
    assert {"bg", "cm", "av", "tm"} <= set(got[0])
    silent = got[0]
    assert silent["av"] == "abstained" and 0 <= float(silent["cm"]) <= 1
    assert silent["strongest"] == outcomes["silent.mp4"].report["strongest"]
    assert got[1]["status"] == "failed" and "no face" in got[1]["reason"] and got[1]["verdict"] == ""
    page = html_path.read_text()
    assert 'href="silent/report.html"' in page and "not analysed" in page and "&lt;i&gt;" in page


def test_summary_columns_follow_the_design_order(outcomes, tmp_path):
    rows = [summary_row(outcomes["silent.mp4"].report, "silent")]
    csv_path, _ = write_summary(rows, tmp_path)
    header = open(csv_path).readline().strip().split(",")
    assert header[header.index("strongest") + 1 : header.index("strongest") + 5] == ["bg", "av", "cm", "tm"]
