"""Training in sessions of a lent machine (issue 13, docs/kaggle.md): `--time-limit` stops a run cleanly
and unfinished, `--resume` / `--resume-from` (a read-only copy of an earlier session's output) finish
it, `--max-cache-gb` trains DFDC chunk by chunk under a disk budget, and examples/kaggle/notebook.sh,
shown in docs/kaggle.md, runs one specialist's three stages over several sessions."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import lightning  # noqa: F401 - imported here, once: a test's time limit is not spent on the first import
import pytest
import torch
from factories import cache_on_disk
from train_fakes import FakeFrameSpecialist

from dfpanel.cli import main
from dfpanel.errors import ConfigError
from dfpanel.models.specialists.base import register_specialist
from dfpanel.train.limits import (
    TIME_LIMIT_EXIT,
    TimeLimit,
    TimeLimitReached,
    parse_duration,
)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "kaggle" / "notebook.sh"
DOC = REPO / "docs" / "kaggle.md"


@register_specialist
class SlowFrameSpecialist(FakeFrameSpecialist):
    """The fake frame specialist, 0.1 s per training batch: a run of 72 batches outlasts a 4 s limit."""

    name = "slowframe"

    def forward(self, inputs):
        if self.training:
            time.sleep(0.1)
        return super().forward(inputs)


EPOCHS = 6
FAKE = ["model.specialist=slowframe", "model.backbone=null", "model.pretrained=null", "model.image_size=null",
        "model.dropout=null", "data.dataset=null", "data.max_videos=null", "data.frames_per_video=null",
        "data.val_frames_per_video=null", "data.batch_size=8", "optim.lr=0.05", "trainer.log_every_n_steps=1",
        f"trainer.max_epochs={EPOCHS}"]


def sets(*overrides: str) -> list[str]:
    return [a for o in (*FAKE, *overrides) for a in ("--set", o)]


def train_args(cache: Path, out: Path, *extra: str, config: str = "cm/tiny_ffpp") -> list[str]:
    return ["train", "--config", config, "--data", str(cache), "--out", str(out), "--quiet", *sets(), *extra]


def ckpt_step(run: Path) -> int:
    return int(torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"])


def steps_of_whole_run(run: Path) -> int:
    """Optimizer steps an uninterrupted run takes: EPOCHS x batches per epoch (batch 8, every sample)."""
    return EPOCHS * math.ceil(json.loads((run / "run.json").read_text())["n_train_samples"] / 8)


def logged_steps(run: Path) -> list[list[int]]:
    """Training steps logged by each start of the run (one CSV version folder per start)."""
    out = []
    for version in sorted((run / "logs" / "csv").glob("version_*")):
        with open(version / "metrics.csv") as fh:
            out.append([int(r["step"]) for r in csv.DictReader(fh) if r.get("train_loss")])
    return out


def snapshot(folder: Path) -> dict:
    """Every file's content hash and every folder, to show that nothing under `folder` changed."""
    out = {}
    for p in sorted(folder.rglob("*")):
        out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def read_only(folder: Path) -> None:
    """As Kaggle mounts /kaggle/input. (Root ignores the mode bits: `snapshot` shows nothing was written.)"""
    for p in [*folder.rglob("*"), folder]:
        p.chmod(stat.S_IREAD | stat.S_IRGRP | stat.S_IROTH | (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH if p.is_dir() else 0))


def writable(folder: Path) -> None:
    for p in [folder, *folder.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    cache_on_disk(root, dataset="ffpp")  # 12 train videos x 8 frames: 12 batches of 8 per epoch, 72 in all
    cache_on_disk(root, dataset="celebdf", counts={"train": (3, 3), "val": (2, 2)})
    return root


# ---- --time-limit ------------------------------------------------------------------------------
@pytest.mark.parametrize("text, seconds", [("8h30m", 30600), ("45m", 2700), ("90s", 90), ("1.5h", 5400),
                                           ("1d2h", 93600), (" 2m 30s ", 150)])
def test_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "90", "8x", "h", "0s", "-5m", "5m10", "1h1h1x"])
def test_a_bad_duration_is_a_one_line_error(text, cache, tmp_path, capsys):
    with pytest.raises(ConfigError, match="expected a duration such as 8h30m"):
        parse_duration(text)
    assert main(train_args(cache, tmp_path / "r", "--time-limit", text)) == 2
    err = capsys.readouterr().err
    assert "--time-limit" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_time_limit_stops_unfinished_and_resume_goes_on_to_the_end(cache, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(cache, run, "--time-limit", "4s")) == TIME_LIMIT_EXIT == 75
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if "time limit" in line]
    assert len(said) == 1 and "stopped" in said[0] and "--resume" in said[0] and "Traceback" not in err, err
    # recorded as stopped, not finished; the checkpoint holds the very step it stopped at
    assert not (run / "result.json").exists()
    stop = json.loads((run / "run.json").read_text())["stopped"]
    total = steps_of_whole_run(run)
    assert stop["reason"] == "time_limit" and 0 < stop["global_step"] < total
    assert ckpt_step(run) == stop["global_step"]

    # the next session, with the same limit, goes on (see also the test below) ...
    code = main(train_args(cache, run, "--resume", "--time-limit", "4s"))
    assert code in (0, 75)
    assert ckpt_step(run) > stop["global_step"]
    # ... and one without a limit finishes with as many steps and epochs as a run never stopped
    assert main(train_args(cache, run, "--resume")) == 0
    result = json.loads((run / "result.json").read_text())
    assert result["global_step"] == total and result["epochs"] == EPOCHS
    assert "stopped" not in json.loads((run / "run.json").read_text())
    assert (run / "best.safetensors").is_file()


def test_a_resumed_run_counts_only_its_own_time(cache, tmp_path):
    """Lightning's Timer restores the training time recorded in last.ckpt and counts it against max_time:
    a second session given the same --time-limit would stop at once. Only this session's time counts."""
    from lightning.pytorch.callbacks import Timer

    from dfpanel.train.config import load_stage_config
    from dfpanel.train.run import build_trainer

    cfg = load_stage_config("cm/tiny_ffpp", [*FAKE, f"data.cache={cache}"])
    trainer = build_trainer(cfg, tmp_path, [], progress=False, max_time=60.0)
    timer = next(cb for cb in trainer.callbacks if isinstance(cb, Timer))
    assert timer.time_remaining() == 60.0
    timer.load_state_dict({"time_elapsed": {"train": 3600.0}})  # what resuming from last.ckpt does
    assert timer.time_remaining() == 60.0


def test_resume_from_a_read_only_copy_of_the_last_session(cache, tmp_path, capsys, caplog):
    prev = tmp_path / "input" / "last-session"
    assert main(train_args(cache, prev, "--time-limit", "4s")) == 75
    capsys.readouterr()
    stopped_at = ckpt_step(prev)
    read_only(prev)
    before = snapshot(prev)
    try:
        out = tmp_path / "working" / "run"
        assert main(train_args(cache, out, "--resume-from", str(prev))) == 0, capsys.readouterr().err
        assert snapshot(prev) == before  # nothing written into the earlier session's output
        result = json.loads((out / "result.json").read_text())
        assert result["global_step"] == steps_of_whole_run(out) and result["run_dir"] == str(out)
        # went on from the step the first session saved (its log came along), not from step 0
        before_stop, after = logged_steps(out)
        assert max(before_stop) < stopped_at <= min(after) + 1 and max(after) > stopped_at
        assert ckpt_step(out) == result["global_step"] > stopped_at
        # the copy is writable though the source was not: the resumed run wrote into it
        assert os.access(out / "run.json", os.W_OK)

        # a second start in the same session goes on with --out, copying nothing again
        assert main(train_args(cache, out, "--resume-from", str(prev))) == 0
        assert "not copied again" in caplog.text
        capsys.readouterr()

        empty = tmp_path / "input" / "empty"
        empty.mkdir()
        for args, message in [
            (train_args(cache, tmp_path / "x", "--resume-from", str(empty)), "holds no dfpanel run"),
            (train_args(cache, tmp_path / "y", "--resume-from", str(tmp_path / "nope")), "no such folder"),
            (train_args(cache, tmp_path / "z", "--resume-from", str(prev), config="cm/tiny_celebdf"),
             "holds a run of cm_tiny_ffpp, not of cm_tiny_celebdf"),
        ]:
            assert main(args) == 2
            err = capsys.readouterr().err
            assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert snapshot(prev) == before
    finally:
        writable(prev)


# ---- the curriculum ------------------------------------------------------------------------------
def curriculum_args(cache: Path, out: Path, *extra: str, specialist: str = "cm") -> list[str]:
    return ["curriculum", "-s", specialist, "--preset", "tiny", "--stages", "ffpp,celebdf", "--data", str(cache),
            "--out", str(out), "--quiet", *sets(), *extra]


def test_curriculum_stopped_by_the_time_limit_starts_no_later_stage(cache, tmp_path, capsys):
    prev = tmp_path / "input" / "runs"
    assert main(curriculum_args(cache, prev, "--time-limit", "4s")) == 75
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if "time limit" in line]
    assert len(said) == 1 and "same command again" in said[0] and "--resume-from" in said[0], err
    ffpp = prev / "cm" / "ffpp"
    assert (ffpp / "checkpoints" / "last.ckpt").is_file() and not (ffpp / "result.json").exists()
    assert not (prev / "cm" / "celebdf").exists()  # the unfinished stage's weights were not passed on

    read_only(prev)
    before = snapshot(prev)
    try:
        for args, message in [
            (curriculum_args(cache, tmp_path / "a", "--resume-from", str(prev), specialist="bg"),
             "holds no run of specialist bg for stages ffpp, celebdf (no bg/<stage>/ with run records) (it holds runs of cm)"),
            (curriculum_args(cache, tmp_path / "b", "--resume-from", str(prev), "--preset", "full"),
             "holds a run of cm_tiny_ffpp, not of cm_ffpp"),
        ]:
            assert main(args) == 2
            err = capsys.readouterr().err
            assert message in err and "Traceback" not in err, err
        out = tmp_path / "working" / "runs"
        assert main(curriculum_args(cache, out, "--resume-from", str(prev))) == 0, capsys.readouterr().err
        assert snapshot(prev) == before
    finally:
        writable(prev)
    first = json.loads((out / "cm" / "ffpp" / "result.json").read_text())
    second = json.loads((out / "cm" / "celebdf" / "run.json").read_text())
    assert first["epochs"] == EPOCHS and ckpt_step(out / "cm" / "ffpp") == first["global_step"]
    assert second["parent_sha256"] == first["sha256"]  # celebdf started from ffpp's finished weights
    assert Path(second["init_from"]) == out / "cm" / "ffpp" / "best.safetensors"  # the copy's, not the input's


def test_the_curriculum_time_limit_is_one_budget_for_all_stages(cache, tmp_path, monkeypatch):
    import dfpanel.train.curriculum as curriculum

    given = []

    def fake_stage(cfg, stage_dir, resume=False, *, time_limit=None, **_):
        given.append(time_limit)
        stage_dir.mkdir(parents=True)
        return {"weights": str(stage_dir / "best.safetensors"), "sha256": "0" * 64}

    monkeypatch.setattr(curriculum, "train_stage", fake_stage)
    limit = TimeLimit(3600)
    curriculum.run_curriculum("cm", cache=str(cache), out=tmp_path / "a", stages=["ffpp", "celebdf"], time_limit=limit)
    assert given == [limit, limit]  # each stage gets what is left of the one limit, not a fresh one



def test_a_stage_started_with_no_time_left_stops_as_it_starts(cache, tmp_path):
    from dfpanel.train.curriculum import run_curriculum

    out = tmp_path / "runs"
    with pytest.raises(TimeLimitReached, match="at step 0, not finished"):
        run_curriculum("cm", cache=str(cache), out=out, stages=["ffpp", "celebdf"], overrides=FAKE, progress=False,
                       time_limit=TimeLimit(1e-6))
    ffpp = out / "cm" / "ffpp"
    assert ckpt_step(ffpp) == 0 and json.loads((ffpp / "run.json").read_text())["stopped"]["global_step"] == 0
    assert not (ffpp / "result.json").exists() and not (out / "cm" / "celebdf").exists()


# ---- --max-cache-gb: DFDC chunk by chunk --------------------------------------------------------------
@pytest.fixture(scope="module")
def dfdc(tmp_path_factory):
    """A synthetic DFDC release (2 parts, 3 real videos each with a fake) indexed into 2 chunks, with one
    real video and its fake per chunk moved to val (each chunk validates on its own videos)."""
    root = tmp_path_factory.mktemp("dfdc")
    assert main(["synth", "--layout", "dfdc", "--out", str(root / "dfdc"), "--videos", "3", "--parts", "2",
                 "--seconds", "1", "--test-videos", "0"]) == 0
    manifest = root / "dfdc.jsonl"
    assert main(["index", str(root / "dfdc"), "--dataset", "dfdc", "--dfdc-chunks", "2", "--out", str(manifest)]) == 0
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for chunk in (0, 1):
        group = sorted(r["group"] for r in rows if r["chunk"] == chunk)[0]
        for r in rows:
            r["split"] = ("val" if r["group"] == group else "train") if r["chunk"] == chunk else r["split"]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def dfdc_args(manifest: Path, out: Path, *extra: str) -> list[str]:
    fake = [o for o in FAKE if not o.startswith(("model.specialist", "trainer.max_epochs"))]
    args = ["train", "--config", "cm/tiny_dfdc", "--manifest", str(manifest), "--out", str(out), "--quiet",
            "--set", "model.specialist=fakeframe", "--set", "trainer.max_epochs=1"]
    return args + [a for o in fake for a in ("--set", o)] + list(extra)


def test_dfdc_chunks_extracted_trained_and_dropped_one_at_a_time(dfdc, tmp_path, monkeypatch, capsys):
    import dfpanel.extract.run as extract_run
    import dfpanel.train.chunks as chunks

    out = tmp_path / "dfdc_run"
    on_disk_while_training, extracted = [], []
    real_fit, real_extract = chunks.fit_stage, extract_run.run_extraction

    def fit(cfg, run_dir, **kw):
        on_disk_while_training.append((kw["chunk"], sorted(p.parent.parent.name for p in out.glob("*/cache/index.jsonl"))))
        if len(on_disk_while_training) == 2 and stop_second[0]:
            raise KeyboardInterrupt  # the session ends while the second chunk trains
        return real_fit(cfg, run_dir, **kw)

    def extraction(manifest, cache, *a, **kw):
        extracted.extend(json.loads(line)["id"] for line in Path(manifest).read_text().splitlines())
        return real_extract(manifest, cache, *a, **kw)

    monkeypatch.setattr(chunks, "fit_stage", fit)
    monkeypatch.setattr(extract_run, "run_extraction", extraction)
    stop_second = [True]
    assert main(dfdc_args(dfdc, out, "--max-cache-gb", "1")) == 130  # interrupted
    progress = json.loads((out / "progress.json").read_text())
    first, second = progress["order"]
    assert progress["done"] == [first]
    assert on_disk_while_training == [(first, [f"chunk_{first}"]), (second, [f"chunk_{second}"])]
    assert not (out / f"chunk_{first}" / "cache").exists() and not (out / "probe_cache").exists()  # dropped
    assert (out / f"chunk_{second}" / "cache").is_dir()  # extracted, its training not finished
    assert not (out / "result.json").exists()
    probe_and_chunks = len(extracted)
    first_best = (out / f"chunk_{first}" / "best.safetensors").stat().st_mtime_ns

    # a re-run skips the finished chunk and the extraction already made, and trains the second chunk
    stop_second[0] = False
    extracted.clear()
    on_disk_while_training.clear()
    assert main(dfdc_args(dfdc, out, "--max-cache-gb", "1", "--resume")) == 0, capsys.readouterr().err
    assert extracted == [] and probe_and_chunks > 0
    assert on_disk_while_training == [(second, [f"chunk_{second}"])]
    assert (out / f"chunk_{first}" / "best.safetensors").stat().st_mtime_ns == first_best
    progress = json.loads((out / "progress.json").read_text())
    assert progress["done"] == [first, second] and (out / "best.safetensors").is_file()
    assert not list(out.glob("*/cache")) and json.loads((out / "result.json").read_text())["chunk_order"] == [first, second]
    for chunk in (first, second):  # each chunk trained on its own cache, of its own videos
        run = json.loads((out / f"chunk_{chunk}" / "run.json").read_text())
        assert run["config"]["data"]["cache"] == str(out / f"chunk_{chunk}" / "cache") and run["n_train_samples"] > 0


def test_a_chunk_over_the_disk_budget_is_refused_in_one_line(dfdc, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(dfdc_args(dfdc, out, "--max-cache-gb", "0.0001", "--set", "data.chunk_order=given")) == 2
    err = capsys.readouterr().err
    line = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(line) == 1 and "chunk 0 does not fit --max-cache-gb 0.0001" in line[0] and " MB" in line[0], err
    assert "Traceback" not in err and not (out / "chunk_0" / "checkpoints").exists()  # refused before training


@pytest.mark.parametrize("args, message", [
    (["--config", "cm/tiny_ffpp", "--data", "{cache}"], "is not a chunked stage"),
    (["--config", "cm/tiny_dfdc"], "pass the DFDC manifest"),
    (["--config", "cm/tiny_dfdc", "--manifest", "{m}", "--devices", "2"], "trains on one device"),
])
def test_max_cache_gb_mistakes_are_one_line_errors(args, message, cache, tmp_path, capsys):
    argv = ["train", *[a.format(cache=cache, m=tmp_path / "m.jsonl") for a in args], "--out", str(tmp_path / "o"),
            "--max-cache-gb", "1"]
    (tmp_path / "m.jsonl").write_text("")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


# ---- the notebook ------------------------------------------------------------------------------------
def test_docs_kaggle_shows_the_notebook_script_as_it_is():
    doc = DOC.read_text()
    assert SCRIPT.read_text().strip() in doc
    assert "--time-limit" in doc and "--resume-from" in doc and "--max-cache-gb" in doc and "--init-sha256" in doc


SAVED: dict[str, dict] = {}  # what each attached input held when attached


def run_session(tmp_path: Path, name: str, inputs: Path, **settings: str) -> tuple[subprocess.CompletedProcess, Path]:
    """One notebook session: the script with fresh /kaggle/working and /tmp, the given %env settings."""
    work = tmp_path / "sessions" / name / "working"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(REPO / "src"), "DFPANEL": f"{sys.executable} -m dfpanel",
           "KAGGLE_INPUT": str(inputs), "KAGGLE_WORKING": str(work), "SCRATCH": str(tmp_path / "sessions" / name / "tmp"),
           "SPECIALIST": "cm", "PRESET": "tiny", "DEVICE": "cpu", "EXTRACT_WORKERS": "1", "FRAMES": "8", **settings}
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout[-3000:] + done.stderr[-3000:]
    return done, work


@pytest.mark.slow
def test_the_notebook_trains_three_stages_over_four_sessions(tmp_path):
    inputs = tmp_path / "kaggle" / "input"
    mounts = {"ffpp": "faceforensics-c23", "celebdf": "celeb-df-v2", "dfdc": "dfdc-train"}
    for layout, extra in [("ffpp", ["--videos", "6"]), ("celebdf", ["--videos", "5"]),
                          ("dfdc", ["--videos", "3", "--parts", "2", "--test-videos", "0"])]:
        assert main(["synth", "--layout", layout, "--out", str(inputs / mounts[layout]), "--seconds", "1", *extra]) == 0
        read_only(inputs / mounts[layout])
        SAVED[mounts[layout]] = snapshot(inputs / mounts[layout])
    try:
        # FF++, session 1: far more epochs than its time allows, so the time limit stops it mid-way
        done, work = run_session(tmp_path, "ffpp-1", inputs, STAGE="ffpp", TRAIN_LIMIT="45s",
                                 TRAIN_ARGS="--set trainer.max_epochs=1000")
        assert "stopped for the time limit, not finished" in done.stdout
        ffpp = work / "runs" / "cm" / "ffpp"
        assert (ffpp / "checkpoints" / "last.ckpt").is_file() and not (ffpp / "result.json").exists()
        assert not (work / "weights").exists() and (work / "cache" / "index.jsonl").is_file()
        reached = torch.load(ffpp / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        prev = save_version(work, inputs, "dfpanel-cm-ffpp")

        # FF++, session 2, resumed from the read-only output of session 1; now two more epochs will do
        epochs = reached["epoch"] + 2
        done, work = run_session(tmp_path, "ffpp-2", inputs, STAGE="ffpp", PREV=str(prev),
                                 TRAIN_ARGS=f"--set trainer.max_epochs={epochs}")
        result = json.loads((work / "runs" / "cm" / "ffpp" / "result.json").read_text())
        assert result["epochs"] == epochs and result["global_step"] > reached["global_step"]
        weights = work / "weights" / "cm_ffpp.safetensors"
        sha = (work / "weights" / "cm_ffpp.sha256").read_text().strip()
        assert sha == hashlib.sha256(weights.read_bytes()).hexdigest() == result["sha256"]
        assert not (work / "cache").exists()  # the finished stage's output is small
        ffpp_out = save_version(work, inputs, "dfpanel-cm-ffpp-2")

        # Celeb-DF, in its own notebook, from the FF++ notebook's weights attached as a dataset
        done, work = run_session(tmp_path, "celebdf-1", inputs, STAGE="celebdf",
                                 INIT=str(ffpp_out / "weights" / "cm_ffpp.safetensors"))
        celebdf = json.loads((work / "runs" / "cm" / "celebdf" / "run.json").read_text())
        assert celebdf["parent_sha256"] == sha
        celebdf_out = save_version(work, inputs, "dfpanel-cm-celebdf")

        # DFDC, chunk by chunk under a disk budget, from the Celeb-DF weights
        done, work = run_session(tmp_path, "dfdc-1", inputs, STAGE="dfdc", MAX_CACHE_GB="1", DFDC_CHUNKS="1",
                                 INIT=str(celebdf_out / "weights" / "cm_celebdf.safetensors"))
        dfdc = work / "runs" / "cm" / "dfdc"
        assert json.loads((dfdc / "progress.json").read_text())["done"] == [0]
        assert not list(dfdc.glob("*cache*")) and not list(dfdc.glob("chunk_*/cache"))  # chunk caches dropped
        side = json.loads((work / "weights" / "cm_dfdc.json").read_text())
        assert [d["name"] for d in side["provenance"]["datasets"]] == ["ffpp", "celebdf", "dfdc"]
        assert side["provenance"]["synthetic_only"] is True
        for slug, before in SAVED.items():  # no session wrote into an attached input
            assert snapshot(inputs / slug) == before, slug
    finally:
        for mount in inputs.iterdir():
            writable(mount)
        SAVED.clear()


def save_version(work: Path, inputs: Path, slug: str) -> Path:
    """Kaggle keeps /kaggle/working as the version's output; attached later, it is read-only."""
    import shutil

    shutil.copytree(work, inputs / slug)
    read_only(inputs / slug)
    SAVED[slug] = snapshot(inputs / slug)
    return inputs / slug
