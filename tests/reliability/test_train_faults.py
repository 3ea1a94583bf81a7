"""Training killed mid-run (kill -9, SIGTERM) and mid-chunk, then `--resume`: the run finishes with the
step count of an uninterrupted run and a valid best.safetensors, nothing half-written, no orphan
process (issue #11). `dfpanel train` runs in a subprocess in its own session, so the whole process
group can be checked afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from factories import cache_on_disk
from reliability_inputs import env_with_src, half_written, session_members
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

TINY = ["model.specialist=fakeframe", "model.backbone=null", "model.pretrained=null", "model.image_size=null",
        "model.dropout=null", "data.dataset=null", "data.max_videos=null", "data.frames_per_video=null",
        "data.val_frames_per_video=null", "data.batch_size=4", "optim.lr=0.05", "trainer.log_every_n_steps=1",
        "trainer.checkpoint_every_n_steps=3", "trainer.early_stopping_patience=0", "data.num_workers=1"]
PLAIN = [*TINY, "trainer.max_epochs=6"]
CHUNKED = [*TINY, "trainer.max_epochs=3", "data.chunked=true", "data.chunk_order=given", "data.chunks=[1, 0]"]
ENTRY = "import sys; import train_fakes; from dfpanel.cli import main; sys.exit(main(sys.argv[1:]))"


def cli_args(cache: Path, out: Path, sets: list[str], *extra: str) -> list[str]:
    args = ["train", "--config", "cm/tiny_ffpp", "--data", str(cache), "--out", str(out), "--quiet", *extra]
    for s in sets:
        args += ["--set", s]
    return args


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", ENTRY, *args], cwd=cwd, env=env_with_src(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def assert_no_orphans(sid: int, wait: float = 20.0) -> None:
    """DataLoader workers notice a dead parent within a few seconds; none may outlive that."""
    deadline = time.monotonic() + wait
    while session_members(sid) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = session_members(sid)
    for pid in left:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert not left, f"orphan processes of the killed run: {left}"


def interrupt_when(proc: subprocess.Popen, ready: Path, sig: int, timeout: float = 240) -> tuple[str, str]:
    """Wait until `ready` exists (a checkpoint was written mid-run), then send `sig` to the trainer."""
    deadline = time.monotonic() + timeout
    while not ready.exists():
        assert proc.poll() is None, f"the run ended before it could be interrupted: {proc.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    time.sleep(0.3)
    assert proc.poll() is None, "the run finished before the signal: make it longer"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return out, err


def resume(cache: Path, out: Path, sets: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", ENTRY, *cli_args(cache, out, sets, "--resume")], check=False, cwd=cwd,
                          env=env_with_src(), capture_output=True, text=True, timeout=600)


def check_finished(out: Path, reference: dict) -> None:
    from train_fakes import FakeFrameSpecialist

    result = json.loads((out / "result.json").read_text())
    assert result["global_step"] == reference["global_step"], (result, reference)
    weights = out / "best.safetensors"
    assert set(load_file(str(weights))) == set(FakeFrameSpecialist().state_dict())
    side = json.loads((out / "best.json").read_text())
    assert side["config"]["model"]["specialist"] == "fakeframe"
    assert not half_written(out), half_written(out)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A tiny cache and the result of an uninterrupted run on it (the step count to reach)."""
    import train_fakes  # noqa: F401

    from dfpanel.train.config import load_stage_config
    from dfpanel.train.stage import train_stage

    root = tmp_path_factory.mktemp("faults")
    cache = cache_on_disk(root / "cache", counts={"train": (4, 4), "val": (2, 2)})
    ref = train_stage(load_stage_config("cm/tiny_ffpp", [*PLAIN, f"data.cache={cache}"]), root / "reference",
                      progress=False)
    return cache, ref


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_killed_mid_train_resumes_to_the_same_step(sig, plain, tmp_path):
    cache, reference = plain
    out = tmp_path / "run"
    proc = start(cli_args(cache, out, PLAIN), tmp_path)
    stdout, stderr = interrupt_when(proc, out / "checkpoints" / "last.ckpt", sig)
    if sig == signal.SIGTERM:
        # a clean stop: the step reached is kept, one line says how to go on, exit 128+15
        assert proc.returncode == 143, stdout + stderr
        assert "Traceback" not in stdout + stderr, stderr
        lines = [ln for ln in stderr.splitlines() if "SIGTERM" in ln]
        assert len(lines) == 1 and "--resume" in lines[0] and str(out) in lines[0], stderr
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not (out / "result.json").exists()
    assert_no_orphans(proc.pid)
    done = resume(cache, out, PLAIN, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    check_finished(out, reference)


def test_killed_mid_chunk_resumes_the_unfinished_chunk(tmp_path):
    import train_fakes  # noqa: F401

    from dfpanel.train.config import load_stage_config
    from dfpanel.train.stage import train_stage

    cache = cache_on_disk(tmp_path / "dfdc", dataset="dfdc", chunks=2, counts={"train": (4, 4), "val": (2, 2)})
    reference = train_stage(load_stage_config("cm/tiny_ffpp", [*CHUNKED, f"data.cache={cache}"]), tmp_path / "ref",
                            progress=False)
    out = tmp_path / "stage"
    proc = start(cli_args(cache, out, CHUNKED), tmp_path)
    # chunk 1 trains first; kill -9 once the second chunk (0) has written a checkpoint
    interrupt_when(proc, out / "chunk_0" / "checkpoints" / "last.ckpt", signal.SIGKILL)
    assert_no_orphans(proc.pid)
    progress = json.loads((out / "progress.json").read_text())
    assert progress["done"] == [1], progress
    chunk1 = (out / "chunk_1" / "best.safetensors").stat().st_mtime_ns
    done = resume(cache, out, CHUNKED, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((out / "progress.json").read_text())["done"] == [1, 0]
    assert (out / "chunk_1" / "best.safetensors").stat().st_mtime_ns == chunk1  # the finished chunk not redone
    ref0 = json.loads((tmp_path / "ref" / "chunk_0" / "result.json").read_text())
    assert json.loads((out / "chunk_0" / "result.json").read_text())["global_step"] == ref0["global_step"]
    assert reference["chunk_order"] == [1, 0]
    check_finished(out, json.loads((tmp_path / "ref" / "result.json").read_text()))
