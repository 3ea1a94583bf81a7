"""The pure parts of benchmarks/generalisation.py: manifest rewriting and the per-trace AUC table (no training)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from dfpanel.index.manifest import VideoRecord, read_manifest, write_manifest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "generalisation.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("generalisation_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def folder_rows(bench, n_people: int, split: str = "train") -> list[VideoRecord]:
    """What `dfpanel index` gives a `synth --layout folder --traces <all>` set (its own splits, any)."""
    rows = []
    for k in range(n_people):
        group = f"folder-{k:04d}"
        rows.append(VideoRecord(id=f"folder__real__real_{k:04d}", path=f"real/real_{k:04d}.mp4", label=0,
                                fake_type="real", split=split, dataset="folder", group=group))
        for t in bench.TRACES:
            rows.append(VideoRecord(id=f"folder__fake__{t}__fake_{k:04d}", path=f"fake/{t}/fake_{k:04d}.mp4", label=1,
                                    fake_type=t, split=split, dataset="folder", group=group, manipulations=[t]))
    return rows


def test_train_set_is_train_and_val_only_by_whole_groups_and_never_meets_the_test_set(bench, tmp_path):
    train = bench.train_set_rows(folder_rows(bench, 12, split="test"), seed=1)
    test = bench.eval_set_rows(folder_rows(bench, 3, split="train"))  # same ids and groups as the train set's
    assert {r.split for r in train} == {"train", "val"} and {r.split for r in test} == {"test"}
    by_group = {}
    for r in train:
        by_group.setdefault(r.group, set()).add(r.split)
    assert all(len(s) == 1 for s in by_group.values())  # a person and their fakes share a split
    val_groups = [g for g, s in by_group.items() if s == {"val"}]
    assert len(val_groups) == 2  # 15% of 12 people
    val = [r for r in train if r.split == "val"]
    assert {r.label for r in val} == {0, 1}
    assert not {r.id for r in train} & {r.id for r in test}
    assert not {r.group for r in train} & {r.group for r in test}
    # both fit in one manifest file each and read back as written
    write_manifest(train, tmp_path / "train.jsonl")
    write_manifest(test, tmp_path / "test.jsonl")
    assert not read_manifest(tmp_path / "train.jsonl", split="test")
    assert len(read_manifest(tmp_path / "test.jsonl", split="test")) == 3 * 7
    assert bench.train_set_rows(folder_rows(bench, 1))[0].split == "train"  # one person: no val possible


@pytest.mark.parametrize("spec", ["bg", "rr", "cm", "tm", "av"])
def test_loto_manifest_drops_only_the_held_out_traces_fakes(bench, spec):
    train = bench.train_set_rows(folder_rows(bench, 6))
    loto = bench.loto_rows(train, bench.HELD_OUT[spec])
    held = set(bench.HELD_OUT[spec])
    assert not [r for r in loto if r.label == 1 and (r.fake_type in held or held & set(r.manipulations))]
    assert {r.fake_type for r in loto} == {"real", *(set(bench.TRACES) - held)}
    assert len([r for r in loto if r.label == 0]) == 6
    assert len(loto) == len(train) - 6 * len(held)


def test_reals_only_manifest_has_no_fakes(bench):
    train = bench.train_set_rows(folder_rows(bench, 5))
    reals = bench.reals_only_rows(train)
    assert len(reals) == 5 and {r.label for r in reals} == {0} and {r.fake_type for r in reals} == {"real"}


def test_test_size_rule_and_defaults(bench):
    assert bench.min_test_videos(0.05) == 20
    assert bench.DEFAULTS["test_videos"] >= bench.min_test_videos()
    assert 1 / bench.DEFAULTS["test_videos"] <= bench.MAX_AUC_STEP


def test_auc_cells_per_trace_with_counts(bench):
    videos = [{"label": 0, "fake_type": "real", "prob": p} for p in (0.1, 0.2, 0.3, 0.4)]
    videos += [{"label": 1, "fake_type": "face_swap", "prob": p} for p in (0.9, 0.8)]  # above every real
    videos += [{"label": 1, "fake_type": "relight", "prob": p} for p in (0.15, 0.35)]  # half
    cells = bench.auc_cells(videos)
    assert cells["face_swap"] == {"auc": 1.0, "n_real": 4, "n_fake": 2, "n_abstained": 0}
    assert cells["relight"] == {"auc": 0.5, "n_real": 4, "n_fake": 2, "n_abstained": 0}
    assert cells["recompress"] == {"auc": None, "n_real": 4, "n_fake": 0, "n_abstained": 0}
    assert cells["all"]["n_fake"] == 4 and cells["all"]["auc"] == pytest.approx(0.75)
    # A video the specialist abstained on (AV: no speech anywhere) has no score: out of the AUC, counted.
    silent = bench.auc_cells(videos + [{"label": 1, "fake_type": "face_swap", "prob": float("nan")},
                                       {"label": 0, "fake_type": "real", "prob": float("nan")}])
    assert silent["face_swap"] == {"auc": 1.0, "n_real": 4, "n_fake": 2, "n_abstained": 2}
    assert silent["relight"]["n_abstained"] == 1
    table = bench.markdown_table([
        {"specialist": "rr", "regime": "supervised", "trained_on": "all but face_swap", "held_out": ["face_swap"],
         "cells": cells, "status": "ok"},
        {"specialist": "rr", "regime": "mix", "trained_on": "all but face_swap", "held_out": ["face_swap"],
         "status": "skipped: pseudofakes.mode not supported by the training config"},
    ])
    lines = table.splitlines()
    assert lines[0].startswith("| specialist | regime | trained on | face_swap | relight |") and lines[0].endswith("| all |")
    assert "| RR | supervised | all but face_swap | 1.00* (4/2) | 0.50 (4/2) | n/a (4/0) |" in lines[2]
    assert "skipped" in lines[3] and lines[3].count("|") == lines[0].count("|")


def test_runs_over_training_seeds_become_one_row_with_mean_and_range(bench):
    def run(seed, face_swap, relight=0.5):
        cells = {t: {"auc": 0.5, "n_real": 20, "n_fake": 20, "n_abstained": 0} for t in (*bench.TRACES, "all")}
        cells["face_swap"] = {**cells["face_swap"], "auc": face_swap}
        cells["relight"] = {**cells["relight"], "auc": relight}
        return {"specialist": "rr", "regime": "pseudo_only", "trained_on": "reals only", "held_out": list(bench.TRACES),
                "cells": cells, "status": "ok", "seed": seed}

    failed = {"specialist": "rr", "regime": "pseudo_only", "trained_on": "reals only", "held_out": [],
              "status": "failed: train exited with 1", "seed": 7}
    single = {**run(42, 0.9), "regime": "mix"}
    rows = bench.over_seeds([run(42, 0.8), run(1, 0.9), run(2, 0.6, relight=None), failed, single])
    assert len(rows) == 2 and rows[1] is single
    fs = rows[0]["cells"]["face_swap"]
    assert fs["aucs"] == [0.8, 0.9, 0.6] and fs["auc"] == pytest.approx(0.7667, abs=1e-4)
    assert (fs["auc_min"], fs["auc_max"]) == (0.6, 0.9)
    assert rows[0]["cells"]["relight"]["auc"] == 0.5  # a seed without an AUC is left out of the mean
    assert rows[0]["seeds"] == [42, 1, 2] and rows[0]["failed_seeds"] == [7]
    line = bench.markdown_table(rows).splitlines()[2]
    assert line.startswith("| RR | pseudo_only | reals only | 0.77 [0.60-0.90]* (20/20) | 0.50 [0.50-0.50]* (20/20) |")
