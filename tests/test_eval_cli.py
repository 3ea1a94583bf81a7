"""`dfpanel eval` end to end with a stand-in scorer: manifests in, metrics.json / scores.csv / roc.png
and the cross-dataset table out; user mistakes end as one line and exit code 2.

The model and predict_scores are stand-ins (fixed per-video scores from the manifest), so this test
checks the evaluation plumbing, not a network; tests/test_eval_model.py runs a real tiny specialist.
"""

from __future__ import annotations

import json
import math
import sys
import types
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dfpanel.cli import main
from dfpanel.evaluate.tables import markdown_table
from dfpanel.index.manifest import VideoRecord, read_manifest, write_manifest


def make_manifest(path: Path, dataset: str, n_real: int, n_fake: int, fake_type: str, split: str = "test") -> Path:
    """`fake_type` may be several, comma-separated: the fakes take them in turn."""
    types_ = fake_type.split(",")
    recs = [
        VideoRecord(id=f"{dataset}_{i:03d}", path=f"{i}.mp4", label=int(i >= n_real),
                    fake_type=types_[i % len(types_)] if i >= n_real else "real", split=split, dataset=dataset,
                    group=f"g{i}")
        for i in range(n_real + n_fake)
    ]  # fmt: skip
    write_manifest(recs, path)
    return path


def fake_predict_scores(model, cache_root, *, manifest=None, split=None, batch_size=16, device="cpu",
                        num_workers=0, progress=True):  # fmt: skip
    """Four samples per video; fakes score higher on average, `model.skill` sets by how much."""
    rows = []
    for r in read_manifest(manifest, split=split):
        if r.id.startswith("noface"):
            continue  # as if extraction found no face: not in the cache
        rng = np.random.default_rng(zlib.crc32(f"{model.name}/{r.id}".encode()))
        centre = model.skill * (1 if r.label else -1) + rng.normal(0, 1)
        for k in range(4):
            logit = centre + rng.normal(0, 1)
            rows.append(dict(video_id=r.id, dataset=r.dataset, label=r.label, fake_type=r.fake_type, split=r.split,
                             group=r.group, position=k, time=k / 25, logit=logit, prob=1 / (1 + math.exp(-logit))))  # fmt: skip
    return pd.DataFrame(rows, columns=["video_id", "dataset", "label", "fake_type", "split", "group", "position",
                                       "time", "logit", "prob"])  # fmt: skip


@pytest.fixture
def stand_ins(monkeypatch):
    def load_specialist(path, device="cpu", **overrides):
        side = json.loads(Path(path).with_suffix(".json").read_text())
        return types.SimpleNamespace(name=side["specialist"], skill=side["skill"])

    monkeypatch.setitem(sys.modules, "dfpanel.weights.io", types.SimpleNamespace(load_specialist=load_specialist))
    monkeypatch.setitem(sys.modules, "dfpanel.inference.scores", types.SimpleNamespace(predict_scores=fake_predict_scores))
    monkeypatch.setenv("COLUMNS", "240")  # keep the rich table on one line per row


@pytest.fixture
def bench(tmp_path):
    weights = []
    for name, skill, stage in (("cm", 1.5, "ffpp"), ("rr", 0.3, "ffpp")):
        w = tmp_path / f"{name}.safetensors"
        w.write_bytes(b"not read by the stand-in")
        w.with_suffix(".json").write_text(json.dumps({"specialist": name, "stage": stage, "skill": skill,
                                                      "sha256": f"{zlib.crc32(name.encode()):08x}" * 8}))  # fmt: skip
        weights.append(w)
    manifests = [
        make_manifest(tmp_path / "celebdf.jsonl", "celebdf", 15, 25, "Celeb-synthesis"),
        make_manifest(tmp_path / "dfdc.jsonl", "dfdc", 20, 20, "dfdc-fake"),
    ]
    cache = tmp_path / "cache"
    cache.mkdir()
    return weights, manifests, cache, tmp_path / "out"


def run_eval(weights, manifests, cache, out, *extra) -> int:
    argv = ["eval", "--data", str(cache), "--out", str(out), *extra]
    for w in weights:
        argv += ["--weights", str(w)]
    for m in manifests:
        argv += ["--manifest", str(m)]
    return main(argv)


def test_eval_writes_metrics_scores_and_roc(stand_ins, bench, capsys):
    weights, manifests, cache, out = bench
    assert run_eval(weights[:1], manifests, cache, out) == 0
    printed = capsys.readouterr().out

    metrics = json.loads((out / "metrics.json").read_text())
    (run,) = metrics["runs"]
    assert run["weights"]["specialist"] == "cm" and run["weights"]["stage"] == "ffpp"
    assert run["weights"]["sha256"] == json.loads(weights[0].with_suffix(".json").read_text())["sha256"]
    assert [t["name"] for t in run["test_sets"]] == ["celebdf", "dfdc"]
    assert metrics["version"] and metrics["split"] == "test" and metrics["threshold"] == 0.5

    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == (40 + 40) * 4
    videos = pd.read_csv(out / "video_scores.csv")
    for ts in run["test_sets"]:
        v = videos[videos["test_set"] == ts["name"]]
        assert ts["n_videos"] == len(v) == 40
        assert ts["video"]["overall"]["auc"] == pytest.approx(roc_auc_score(v["label"], v["prob"]), abs=1e-6)
        s = scores[scores["test_set"] == ts["name"]]
        assert ts["frame"]["overall"]["auc"] == pytest.approx(roc_auc_score(s["label"], s["prob"]), abs=1e-6)
    assert [list(t["video"]["by_fake_type"]) for t in run["test_sets"]] == [["Celeb-synthesis"], ["dfdc-fake"]]
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    auc_celebdf = f"{100 * run['test_sets'][0]['video']['overall']['auc']:.1f}"
    line = next(row for row in printed.splitlines() if "celebdf" in row)
    assert auc_celebdf in line and "ffpp" in line


def test_several_weights_give_specialist_by_test_set_rows(stand_ins, bench, capsys):
    weights, manifests, cache, out = bench
    assert run_eval(weights, manifests, cache, out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["weights"]["label"] for r in metrics["runs"]] == ["cm", "rr"]
    # The stand-in cm is more skilled than rr: the table must not mix their rows up.
    cm, rr = (r["test_sets"][0]["video"]["overall"]["auc"] for r in metrics["runs"])
    assert cm > rr
    md = markdown_table(metrics)
    lines = md.strip().splitlines()
    assert lines[0].startswith("| Specialist | Train | Test set")
    assert len(lines) == 2 + 4
    assert any(ln.startswith("| rr | ffpp | dfdc | 40 |") for ln in lines)
    printed = capsys.readouterr().out
    assert sum(("cm" in ln or "rr" in ln) and ("celebdf" in ln or "dfdc" in ln) for ln in printed.splitlines()) == 4


def test_videos_missing_from_cache_are_counted_and_reported(stand_ins, bench, capsys):
    weights, manifests, cache, out = bench
    recs = read_manifest(manifests[1])
    recs += [VideoRecord(id=f"noface_{i}", path=f"n{i}.mp4", label=1, fake_type="dfdc-fake", split="test",
                         dataset="dfdc", group=f"n{i}") for i in range(3)]  # fmt: skip
    write_manifest(recs, manifests[1])
    assert run_eval(weights[:1], manifests, cache, out) == 0
    celebdf, dfdc = json.loads((out / "metrics.json").read_text())["runs"][0]["test_sets"]
    assert (celebdf["n_manifest"], celebdf["n_videos"], celebdf["missing_videos"]) == (40, 40, [])
    assert (dfdc["n_manifest"], dfdc["n_videos"]) == (43, 40)
    assert dfdc["missing_videos"] == ["noface_0", "noface_1", "noface_2"]
    assert "3 of 43 videos are not in the cache" in capsys.readouterr().out


def test_per_fake_type_table_for_ffpp_style_test_set(stand_ins, bench, capsys):
    weights, _, cache, out = bench
    ffpp = make_manifest(out.parent / "ffpp.jsonl", "ffpp", 20, 30, "Deepfakes,FaceSwap,NeuralTextures")
    assert run_eval(weights[:1], [ffpp], cache, out) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    videos = pd.read_csv(out / "video_scores.csv")
    md = markdown_table(metrics, breakdown="by_fake_type").strip().splitlines()
    assert md[0].startswith("| Train | Test set | Fake type | Videos | AUC %")
    assert len(md) == 2 + 3
    for ft in ("Deepfakes", "FaceSwap", "NeuralTextures"):
        sub = videos[videos["fake_type"].isin(["real", ft])]
        auc = f"{100 * roc_auc_score(sub['label'], sub['prob']):.1f}"
        assert any(ln.startswith(f"| ffpp | ffpp | {ft} | 30 | {auc} |") for ln in md), (ft, auc, md)
        assert any(ft in ln and auc in ln for ln in printed.splitlines())  # the second table is printed
    with pytest.raises(ValueError, match="breakdown"):
        markdown_table(metrics, breakdown="by_moon_phase")


def test_one_class_test_set_reports_nan_not_a_crash(stand_ins, bench, capsys):
    weights, _, cache, out = bench
    only_fakes = make_manifest(out.parent / "fakeavceleb.jsonl", "fakeavceleb", 0, 12, "FakeVideo-FakeAudio")
    assert run_eval(weights[:1], [only_fakes], cache, out) == 0
    text = (out / "metrics.json").read_text()
    strict = json.loads(text, parse_constant=lambda c: pytest.fail(f"metrics.json holds {c}, not valid JSON"))
    overall = strict["runs"][0]["test_sets"][0]["video"]["overall"]
    assert overall["auc"] is None and overall["eer"] is None and overall["fake_acc"] is not None
    printed = capsys.readouterr().out
    assert "undefined" in printed
    assert "n/a" in markdown_table(json.loads(text))


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (lambda w, m, c: (w, [m[0].with_name("missing.jsonl")], c, []), "missing.jsonl"),
        (lambda w, m, c: ([w[0].with_name("nope.safetensors")], m, c, []), "nope.safetensors"),
        (lambda w, m, c: (w, m, c.with_name("nocache"), []), "nocache"),
        (lambda w, m, c: (w, m, c, ["--threshold", "2"]), "threshold"),
        (lambda w, m, c: (w, m, c, ["--aggregate", "mode"]), "aggregate"),
        (lambda w, m, c: (w, m, c, ["--split", "train"]), "no cached samples"),
    ],
)
def test_user_mistakes_are_one_line_exit_2(stand_ins, bench, capsys, mutate, expected):
    weights, manifests, cache, out = bench
    w, m, c, extra = mutate(weights[:1], manifests, cache)
    assert run_eval(w, m, c, out, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
