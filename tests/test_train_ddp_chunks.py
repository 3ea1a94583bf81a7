"""DDP on a chunked stage (DFDC): every rank trains the same chunks in the same order, each on its
own share of one sampler draw, and rank 0 alone writes. A 2-process gloo run on CPU through the CLI,
and fast checks of how a non-zero rank follows rank 0's progress.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from factories import cache_on_disk

from dfpanel.errors import DataError
from dfpanel.train import chunks
from dfpanel.train.config import load_stage_config
from dfpanel.train.run import RANK_VARS
from dfpanel.weights.fetch import sha256_of

PROBE = Path(__file__).parent / "ddp_probe.py"


@pytest.fixture
def dfdc_cache(tmp_path):
    return cache_on_disk(tmp_path / "cache", dataset="dfdc", chunks=2, counts={"train": (4, 4), "val": (2, 2)})


def test_ddp_two_processes_train_a_chunked_stage_in_step(dfdc_cache, tmp_path):
    """cm/tiny_dfdc, 2 CPU processes on gloo (Lightning's launcher starts rank 1 by re-running the
    command), recorded per rank by tests/ddp_probe.py."""
    out, log = tmp_path / "ddp", tmp_path / "probe.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in RANK_VARS}
    env.update(OMP_NUM_THREADS="1", DFPANEL_PROBE_LOG=str(log))
    cmd = [sys.executable, str(PROBE), "train", "--config", "cm/tiny_dfdc", "--data", str(dfdc_cache),
           "--out", str(out), "--devices", "2", "--quiet", "--set", "trainer.accelerator=cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    result = json.loads((out / "result.json").read_text())
    progress = json.loads((out / "progress.json").read_text())
    order = progress["order"]
    assert result["world_size"] == 2 and sorted(order) == [0, 1] and sorted(progress["done"]) == [0, 1]
    assert result["chunk_order"] == order
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    by = lambda what, rank: [r for r in recs if r["what"] == what and r["rank"] == rank]  # noqa: E731
    assert len({r["pid"] for r in recs}) == 2  # two processes, one per rank

    # The chunks advance the same on both ranks: same order (rank 0's), same steps, same weights.
    dirs = [f"chunk_{c}" for c in order]
    assert [r["dir"] for r in by("fit", 0)] == [r["dir"] for r in by("fit", 1)] == dirs
    ends = {rank: {r["dir"]: (r["step"], r["sha256"]) for r in by("fit_end", rank)} for rank in (0, 1)}
    assert ends[0] == ends[1]
    for d in dirs:
        step, sha = ends[0][d]
        assert sha == sha256_of(out / d / "best.safetensors")
        ckpt = torch.load(out / d / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        # 4 train videos x 4 frames in a chunk / batch 8 / 2 ranks = 1 step per epoch, 2 epochs
        assert ckpt["global_step"] == step == 2

    # Disjoint data: per chunk and epoch both ranks shard the same sampler draw, each training on its
    # own positions of it (together no more of any sample than the draw holds), and only on that chunk.
    for d, chunk in zip(dirs, order):
        draws = {rank: [r["list"] for r in by("draw", rank) if r["dir"] == d] for rank in (0, 1)}
        assert draws[0] == draws[1] and len(draws[0]) == 2  # one draw per epoch
        for epoch, drawn in enumerate(draws[0]):
            seen = {rank: [i for r in by("batch", rank) if r["dir"] == d and r["epoch"] == epoch for i in r["index"]]
                    for rank in (0, 1)}
            assert len(seen[0]) == len(seen[1]) == len(drawn) // 2
            assert not Counter(seen[0]) + Counter(seen[1]) - Counter(drawn)  # within one draw
            assert seen[0] != seen[1]
        assert {c for r in recs if r["what"] == "batch" and r["dir"] == d for c in r["chunks"]} == {chunk}

    # Rank 0 alone writes weights: each chunk's best, and the stage's copy of the last one.
    saves = [r for r in recs if r["what"] == "save_weights"]
    assert saves and {r["rank"] for r in saves} == {0}
    assert {Path(r["path"]).parent.name for r in saves} == set(dirs)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.safetensors")) == sorted(
        ["best.safetensors"] + [f"{d}/best.safetensors" for d in dirs])
    assert sha256_of(out / "best.safetensors") == ends[0][dirs[-1]][1]


# -- fast: how a non-zero rank follows rank 0 ----------------------------------------------------


@pytest.fixture
def rank_one(monkeypatch):
    for var in RANK_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOCAL_RANK", "1")


def _stub_fits(monkeypatch, out: Path) -> list[int]:
    fitted = []

    def fit_stage(cfg, chunk_dir, *, resume, chunk, optimizer_state, progress, time_limit=None):
        fitted.append(chunk)
        return {"weights": str(chunk_dir / "best.safetensors"), "sha256": f"sha{chunk}", "metrics": {}, "chunk": chunk}

    monkeypatch.setattr(chunks, "fit_stage", fit_stage)
    monkeypatch.setattr(chunks, "auto_chunk_order", lambda *a: pytest.fail("a non-zero rank ordered the chunks itself"))
    monkeypatch.setattr(chunks, "available_chunks", lambda *a: pytest.fail("a non-zero rank listed the chunks itself"))
    return fitted


def test_a_non_zero_rank_follows_rank_zeros_progress_and_writes_nothing(rank_one, monkeypatch, tmp_path):
    out = tmp_path / "dfdc"
    out.mkdir()
    state = {"order": [3, 1, 2], "done": [3], "results": {"3": {"weights": "w3", "sha256": "s3", "metrics": {}}},
             "losses": {"1": 0.5, "2": 0.6, "3": 0.1}}
    (out / chunks.PROGRESS_FILE).write_text(json.dumps(state))
    before = (out / chunks.PROGRESS_FILE).read_text()
    fitted = _stub_fits(monkeypatch, out)
    cfg = load_stage_config("cm/tiny_dfdc", [f"data.cache={tmp_path / 'none'}"])
    # not --resume: in rank 0 an existing progress.json would be refused; here it is rank 0's, just written
    summary = chunks.train_chunked(cfg, out, resume=False, progress=False)
    assert fitted == [1, 2] and summary["chunk_order"] == [3, 1, 2]
    assert (out / chunks.PROGRESS_FILE).read_text() == before
    assert sorted(p.name for p in out.iterdir()) == [chunks.PROGRESS_FILE]  # no result.json, no best copy


def test_a_non_zero_rank_waits_for_rank_zeros_chunk_order(rank_one, monkeypatch, tmp_path):
    out = tmp_path / "dfdc"
    out.mkdir()
    prog = out / chunks.PROGRESS_FILE
    with pytest.raises(DataError, match="rank 0 did not write the chunk order"):
        chunks.wait_for_progress(prog, timeout_s=0.2, poll_s=0.05)

    def rank_zero():  # an order still being computed, then written
        time.sleep(0.3)
        prog.write_text(json.dumps({"order": None, "done": [], "results": {}, "losses": None}))
        time.sleep(0.3)
        prog.write_text(json.dumps({"order": [1, 0], "done": [], "results": {}, "losses": {"0": 1.0, "1": 0.2}}))

    fitted = _stub_fits(monkeypatch, out)
    writer = threading.Thread(target=rank_zero)
    writer.start()
    try:
        monkeypatch.setattr(chunks, "RANK_WAIT_S", 30.0)
        chunks.train_chunked(load_stage_config("cm/tiny_dfdc", [f"data.cache={tmp_path}"]), out, progress=False)
    finally:
        writer.join()
    assert fitted == [1, 0]
