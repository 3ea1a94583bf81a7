"""Cross-generator protocol on synthetic data: does each specialist detect a trace it never trained on?

Data: a TRAIN set and a separate TEST set, both `dfpanel synth --layout folder --traces <all six>`
(every real video gets one fake per trace, each fake carrying that trace alone) with different seeds,
so no person, scene or voice is shared. The script rewrites the index manifests so the train set's
rows are train/val only (about 15% of its people in val) and the test set's rows are all `test`, then
extracts both into one face-track cache. Per specialist (tiny presets `<s>/tiny_ffpp`, 64 px tiny
backbone) it trains under three regimes and evaluates every model on the whole test set:

  supervised    pseudofakes.mode=off   leave-one-trace-out: the train manifest drops the fakes of the
  mix           pseudofakes.mode=mix   specialist's held-out trace(s) (HELD_OUT below); pseudo-fakes mixed in
  pseudo_only   pseudofakes.mode=only  real-only: the train manifest holds real videos only
  ceiling       pseudofakes.mode=off   (on request) supervised on every trace, the held-out one included:
                                       what this model and data size learn of a trace when shown it

Output: video-level AUC per trace (the test set's reals against its fakes carrying that trace), rows
specialist x regime, each cell with n_real/n_fake; held-out traces are marked `*`. Printed as markdown
and written to benchmarks/results/generalisation.json (sizes, seeds, wall times, command lines).

    python benchmarks/generalisation.py                     # the full run (~40 min on 2 CPU cores)
    python benchmarks/generalisation.py --quick --regimes supervised --specialists cm   # smoke run

Re-running reuses what exists (synth/extract resume; a trained model or an evaluation made with the
same command is kept). A regime whose `pseudofakes.mode` the training config does not know yet is
skipped and flagged, not failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shlex
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

TRACES = ("face_swap", "relight", "recompress", "temporal_jitter", "audio_shift", "audio_replace")
SPECIALISTS = ("bg", "rr", "cm", "tm", "av")
REGIMES = ("supervised", "mix", "pseudo_only")  # the protocol; `ceiling` runs only when asked for
ALL_REGIMES = (*REGIMES, "ceiling")
MODE = {"supervised": "off", "mix": "mix", "pseudo_only": "only", "ceiling": "off"}
# The trace(s) each specialist is built to read, held out of its supervised/mix training.
# BG: relight (a face lit unlike its surroundings is BG's own trace; face_swap is RR's held-out trace,
# and relight is the one trace only BG claims).
HELD_OUT = {
    "bg": ("relight",),
    "rr": ("face_swap",),
    "cm": ("recompress",),
    "tm": ("temporal_jitter",),
    "av": ("audio_shift", "audio_replace"),
}
SEEDS = {"train": 101, "test": 202}
TRAIN_SEED = 42  # the training config's own seed (trainer.seed); other --train-seeds get their own runs
MASK_HEAD = ("bg", "rr")  # specialists whose pseudo-fakes carry a blend mask to learn
VAL_FRACTION = 0.15
# One video moves an AUC by at most 1/n_real (a real) or 1/n_fake (a fake): 20 each keeps it <= 0.05.
MAX_AUC_STEP = 0.05
# Sized for ~20 minutes on 2 CPU cores (see docs/generalisation.md): the test set keeps the size rule;
# training is small (24 train people, 6 epochs); 8 frames per video (one 8-frame clip for TM and AV)
# because every model scores every cached frame of the 140 test videos.
DEFAULTS = dict(train_videos=24, test_videos=20, epochs=6, frames=8, frames_per_video=8, seconds=1.0,
                size="160x120", workers=2)
QUICK = dict(train_videos=4, test_videos=2, epochs=1, frames=8, frames_per_video=4, seconds=0.6,
             size="160x120", workers=1)


# --- the pure parts: manifests and the AUC table ---------------------------------------------------------


def min_test_videos(max_step: float = MAX_AUC_STEP) -> int:
    """Reals (= fakes per trace) the test set needs so one video moves a per-trace AUC by <= max_step."""
    return math.ceil(1 / max_step - 1e-9)


def _prefixed(rec, prefix: str):
    from dataclasses import replace

    return replace(rec, id=f"{prefix}__{rec.id}", group=f"{prefix}__{rec.group}")


def train_set_rows(records: Iterable, *, prefix: str = "gtrain", val_fraction: float = VAL_FRACTION, seed: int = 0):
    """The train set's rows, train/val only: whole groups (a person with all their fakes) go to val,
    about `val_fraction` of them and at least one when there are two or more. Ids and groups get
    `prefix` so they cannot meet the test set's in one cache."""
    rows = [_prefixed(r, prefix) for r in records]
    groups = sorted({r.group for r in rows})
    random.Random(seed).shuffle(groups)
    n_val = max(1, round(val_fraction * len(groups))) if len(groups) >= 2 else 0
    val = set(groups[:n_val])
    for r in rows:
        r.split = "val" if r.group in val else "train"
    return rows


def eval_set_rows(records: Iterable, *, prefix: str = "gtest"):
    """The test set's rows, all `test`, ids and groups prefixed."""
    rows = [_prefixed(r, prefix) for r in records]
    for r in rows:
        r.split = "test"
    return rows


def carries(rec, traces: Sequence[str]) -> bool:
    """Does this fake carry any of `traces` (its fake type or a recorded manipulation)?"""
    return rec.label == 1 and (rec.fake_type in traces or any(m in traces for m in rec.manipulations or ()))


def loto_rows(records: Iterable, held_out: Sequence[str]):
    """Leave-one-trace-out: every row but the fakes carrying a held-out trace."""
    return [r for r in records if not carries(r, held_out)]


def reals_only_rows(records: Iterable):
    return [r for r in records if r.label == 0]


def auc_cells(videos: Sequence[dict], traces: Sequence[str] = TRACES) -> dict:
    """{trace: {"auc", "n_real", "n_fake"}} and "all": the test reals against the fakes of each trace.

    `videos`: one dict per video with `label` (0/1), `fake_type` and `prob` (video_scores.csv rows).
    AUC is None where a class is missing. A video the specialist abstained on (AV: no speech in any
    clip; prob NaN) has no score: it is left out and counted in `n_abstained`."""
    from dfpanel.inference.aggregate import auroc

    scored = [v for v in videos if not math.isnan(float(v["prob"]))]
    abstained = [v for v in videos if math.isnan(float(v["prob"]))]
    reals = [v for v in scored if int(v["label"]) == 0]
    cells = {}
    for trace in (*traces, "all"):
        fakes = [v for v in scored if int(v["label"]) == 1 and (trace == "all" or v["fake_type"] == trace)]
        scores = [float(v["prob"]) for v in reals + fakes]
        auc = auroc(scores, [0] * len(reals) + [1] * len(fakes)) if reals and fakes else float("nan")
        n_abstained = sum(1 for v in abstained if int(v["label"]) == 0 or trace == "all" or v["fake_type"] == trace)
        cells[trace] = {"auc": None if math.isnan(auc) else round(auc, 4), "n_real": len(reals), "n_fake": len(fakes),
                        "n_abstained": n_abstained}
    return cells


def over_seeds(runs: Sequence[dict]) -> list[dict]:
    """One row per specialist x regime: a run trained with several seeds becomes one row whose cells
    hold the mean AUC, its range and every seed's AUC (`aucs`); a single run passes through."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["specialist"], run["regime"]), []).append(run)
    rows = []
    for group in groups.values():
        done = [r for r in group if r.get("cells")]
        if len(done) < 2:
            rows.append(done[0] if done else group[0])
            continue
        cells = {}
        for c, first in done[0]["cells"].items():
            aucs = [r["cells"][c]["auc"] for r in done]
            ok = [a for a in aucs if a is not None]
            cells[c] = {**first, "auc": round(sum(ok) / len(ok), 4) if ok else None, "aucs": aucs,
                        "auc_min": min(ok, default=None), "auc_max": max(ok, default=None)}
        rows.append({**done[0], "cells": cells, "seeds": [r.get("seed", TRAIN_SEED) for r in done],
                     "seed": None, "failed_seeds": [r.get("seed") for r in group if not r.get("cells")]})
    return rows


def markdown_table(runs: Sequence[dict], traces: Sequence[str] = TRACES) -> str:
    """Rows specialist x regime, columns traces (+ all); `*` marks a trace the run did not train on.
    A row over several training seeds shows the mean AUC and, in brackets, the lowest and highest."""
    cols = [*traces, "all"]
    lines = ["| specialist | regime | trained on | " + " | ".join(cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    for run in runs:
        cells = run.get("cells") or {}
        out = []
        for c in cols:
            cell = cells.get(c)
            mark = "*" if c in run.get("held_out", ()) else ""
            if not cell:
                out.append(run.get("status", "-") if c == cols[0] else "")
                continue
            auc = "n/a" if cell["auc"] is None else f"{cell['auc']:.2f}"
            if cell.get("aucs") and cell["auc"] is not None:
                auc += f" [{cell['auc_min']:.2f}-{cell['auc_max']:.2f}]"
            abst = f", {cell['n_abstained']} abstained" if cell.get("n_abstained") else ""
            out.append(f"{auc}{mark} ({cell['n_real']}/{cell['n_fake']}{abst})")
        lines.append(f"| {run['specialist'].upper()} | {run['regime']} | {run['trained_on']} | " + " | ".join(out) + " |")
    return "\n".join(lines)


# --- running dfpanel ---------------------------------------------------------------------------------


class Runner:
    """Runs dfpanel commands in-process (as `dfpanel demo` does), recording each command and its wall time."""

    def __init__(self):
        self.commands: list[dict] = []

    def __call__(self, argv: list[str], *, check: bool = True) -> tuple[int, float]:
        from dfpanel.cli import main

        line = "dfpanel " + shlex.join(argv)
        print(f"$ {line}", flush=True)
        t0 = time.perf_counter()
        code = main(argv)
        wall = round(time.perf_counter() - t0, 1)
        self.commands.append({"command": line, "exit": code, "wall_s": wall})
        if check and code != 0:
            raise SystemExit(f"`{line}` exited with {code}")
        return code, wall


def mode_supported(config: str, mode: str) -> str | None:
    """None when the training config takes pseudofakes.mode=<mode>, else the config's error message."""
    from dfpanel.errors import ConfigError
    from dfpanel.train.config import load_stage_config

    try:
        load_stage_config(config, [f"pseudofakes.mode={mode}"])
    except ConfigError as exc:
        return str(exc)
    return None


def _same_command(marker: Path, argv: list[str]) -> bool:
    try:
        return json.loads(marker.read_text())["argv"] == argv
    except (OSError, ValueError, KeyError):
        return False


def build_data(args, work: Path, run) -> dict[str, Path]:
    from dfpanel.index.manifest import read_manifest, write_manifest

    manifests = work / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    sets = {"train": args.train_videos, "test": args.test_videos}
    for name, videos in sets.items():
        run(["synth", "--layout", "folder", "--out", str(work / "data" / name), "--videos", str(videos),
             "--traces", ",".join(TRACES), "--seconds", str(args.seconds), "--size", args.size,
             "--seed", str(SEEDS[name])])
        raw = manifests / f"{name}_index.jsonl"
        if not raw.is_file():
            run(["index", str(work / "data" / name), "--dataset", "folder", "--out", str(raw)])
    paths = {"train": manifests / "train.jsonl", "test": manifests / "test.jsonl",
             "reals": manifests / "train_reals.jsonl"}
    train = train_set_rows(read_manifest(manifests / "train_index.jsonl"), seed=SEEDS["train"])
    write_manifest(train, paths["train"])
    write_manifest(eval_set_rows(read_manifest(manifests / "test_index.jsonl")), paths["test"])
    write_manifest(reals_only_rows(train), paths["reals"])
    for spec in args.specialists:
        paths[f"loto_{spec}"] = manifests / f"train_loto_{spec}.jsonl"
        write_manifest(loto_rows(train, HELD_OUT[spec]), paths[f"loto_{spec}"])
    for name in ("train", "test"):  # resumes: videos already in the cache are skipped
        run(["extract", str(paths[name]), "--out", str(work / "cache"), "--frames", str(args.frames),
             "--workers", str(args.workers), "--no-progress"])
    return paths


def train_and_eval(args, work: Path, paths: dict, spec: str, regime: str, run, seed: int = TRAIN_SEED) -> dict:
    config = f"{spec}/tiny_ffpp"
    trained_on = {"pseudo_only": "reals only", "ceiling": "every trace"}.get(regime, f"all but {'+'.join(HELD_OUT[spec])}")
    held = {"pseudo_only": TRACES, "ceiling": ()}.get(regime, HELD_OUT[spec])
    result = {"specialist": spec, "regime": regime, "config": config, "trained_on": trained_on,
              "held_out": list(held), "pseudofakes_mode": MODE[regime], "seed": seed}
    manifest = {"pseudo_only": paths["reals"], "ceiling": paths["train"]}.get(regime, paths[f"loto_{spec}"])
    sets = ["data.dataset=null", "data.max_videos=null", f"trainer.max_epochs={args.epochs}",
            f"data.frames_per_video={args.frames_per_video}", f"data.val_frames_per_video={args.frames_per_video}"]
    if MODE[regime] != "off" and spec in MASK_HEAD:  # as the */real_only presets: the blend-mask head
        sets += ["model.mask_head=true", "pseudofakes.mask_weight=0.5"]
    if seed != TRAIN_SEED:  # (the default seed's command line stays as it was, so its models are reused)
        sets.append(f"trainer.seed={seed}")
    refused = mode_supported(config, MODE[regime])
    if refused is None:
        sets.append(f"pseudofakes.mode={MODE[regime]}")
    elif MODE[regime] != "off":
        print(f"skip {spec}/{regime}: the training config does not take pseudofakes.mode={MODE[regime]} ({refused})")
        return {**result, "status": "skipped: pseudofakes.mode not supported by the training config",
                "config_error": refused}
    else:  # without the key, training is supervised already
        result["note"] = "pseudofakes.mode not in the training config yet; trained without it (= off)"
    name = regime if seed == TRAIN_SEED else f"{regime}-seed{seed}"
    out = work / "runs" / spec / name
    argv = ["train", "--config", config, "--data", str(work / "cache"), "--manifest", str(manifest),
            "--out", str(out), "--quiet", *[a for s in sets for a in ("--set", s)]]
    marker = out / "generalisation_train.json"
    weights = out / "best.safetensors"
    if weights.is_file() and _same_command(marker, argv):
        result["train_s"] = json.loads(marker.read_text()).get("wall_s")
        result["train_reused"] = True
        run.commands.append({"command": "dfpanel " + shlex.join(argv), "reused": True})
    else:
        if out.exists():
            shutil.rmtree(out)  # made with other settings: train afresh
        code, wall = run(argv, check=False)
        if code != 0 or not weights.is_file():
            return {**result, "status": f"failed: train exited with {code}"}
        marker.write_text(json.dumps({"argv": argv, "wall_s": wall}) + "\n")
        result["train_s"] = wall
    eval_dir = work / "eval" / spec / name
    eval_argv = ["eval", "-w", str(weights), "-m", str(paths["test"]), "--data", str(work / "cache"),
                 "--out", str(eval_dir)]
    scores = eval_dir / "video_scores.csv"
    if not (scores.is_file() and scores.stat().st_mtime >= weights.stat().st_mtime):
        code, wall = run(eval_argv, check=False)
        if code != 0 or not scores.is_file():
            return {**result, "status": f"failed: eval exited with {code}"}
        result["eval_s"] = wall
    import pandas as pd

    result["cells"] = auc_cells(pd.read_csv(scores).to_dict("records"))
    result["status"] = "ok"
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test (AUCs mean nothing)")
    ap.add_argument("--train-videos", type=int, help=f"real videos in the train set (default {DEFAULTS['train_videos']})")
    ap.add_argument("--test-videos", type=int,
                    help=f"real videos in the test set, each with one fake per trace (default {DEFAULTS['test_videos']}: "
                    f"one video moves a per-trace AUC by <= {MAX_AUC_STEP})")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--frames", type=int, help=f"frames extracted per video (default {DEFAULTS['frames']}; 16 doubles eval time)")
    ap.add_argument("--frames-per-video", type=int, help="frames (or clips) sampled per video per epoch")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--size")
    ap.add_argument("--workers", type=int, help="extract worker processes")
    ap.add_argument("--train-seeds", default=str(TRAIN_SEED),
                    help="comma-separated training seeds: each trains its own model; the table shows the mean "
                         "AUC and [lowest-highest] over them (the data stays the same)")
    ap.add_argument("--specialists", default=",".join(SPECIALISTS))
    ap.add_argument("--regimes", default=",".join(REGIMES), help=f"any of {','.join(ALL_REGIMES)} (default: the protocol's three)")
    ap.add_argument("--work", type=Path, help="working folder (default runs/generalisation[-quick])")
    ap.add_argument("--out", type=Path, help="result JSON (default benchmarks/results/generalisation[_quick].json)")
    args = ap.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.specialists = [s.strip() for s in args.specialists.split(",") if s.strip()]
    args.regimes = [r.strip() for r in args.regimes.split(",") if r.strip()]
    try:
        args.train_seeds = [int(x) for x in args.train_seeds.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--train-seeds takes comma-separated integers, got {args.train_seeds!r}")
    bad = [s for s in args.specialists if s not in SPECIALISTS] + [r for r in args.regimes if r not in ALL_REGIMES]
    if bad or not args.specialists or not args.regimes:
        ap.error(f"unknown specialist/regime {bad}; choose from {SPECIALISTS} and {ALL_REGIMES}")
    if args.test_videos < min_test_videos() and not args.quick:
        print(f"warning: --test-videos {args.test_videos} < {min_test_videos()}: one video moves an AUC by "
              f"{1 / args.test_videos:.2f} > {MAX_AUC_STEP}")
    suffix = "-quick" if args.quick else ""
    work = args.work or Path("runs") / f"generalisation{suffix}"
    out = args.out or Path(__file__).parent / "results" / f"generalisation{suffix.replace('-', '_')}.json"
    os.environ.setdefault("OMP_NUM_THREADS", "2")

    run = Runner()
    t0 = time.perf_counter()
    paths = build_data(args, work, run)
    data_s = round(time.perf_counter() - t0, 1)
    runs = []
    for spec in args.specialists:
        for regime in args.regimes:
            for seed in args.train_seeds:
                t1 = time.perf_counter()
                res = train_and_eval(args, work, paths, spec, regime, run, seed)
                res["wall_s"] = round(time.perf_counter() - t1, 1)
                runs.append(res)
    total = round(time.perf_counter() - t0, 1)
    summary = over_seeds(runs)
    table = markdown_table(summary)
    sizes = {k: getattr(args, k) for k in DEFAULTS}
    sizes["test_fakes_per_trace"] = args.test_videos
    result = {
        "protocol": {"traces": TRACES, "held_out": HELD_OUT, "regimes": {r: MODE[r] for r in args.regimes},
                     "val_fraction": VAL_FRACTION, "presets": "<s>/tiny_ffpp (tiny backbone, 64 px)",
                     "auc": "video level, test reals vs test fakes carrying the trace"},
        "quick": args.quick, "sizes": sizes, "seeds": SEEDS, "train_seeds": args.train_seeds,
        "specialists": args.specialists,
        "regimes": args.regimes, "work": str(work), "data_s": data_s, "total_s": total,
        "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "script": "python benchmarks/generalisation.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "commands": run.commands, "runs": runs, "summary": summary, "table_markdown": table,
    }
    print()
    print(table)
    seeds = f"; mean [lowest-highest] over training seeds {args.train_seeds}" if len(args.train_seeds) > 1 else ""
    print(f"\n(* = not trained on; cells: AUC (n_real/n_fake){seeds}); data {data_s:.0f} s, total {total:.0f} s")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
