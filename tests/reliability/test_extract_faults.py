"""`dfpanel extract` under faults (issue #11): SIGTERM/SIGKILL with workers (no orphans, resume),
an unbounded --frames and its memory, a full disk, temp entries left by killed runs."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_inputs import env_with_src, session_members
from video_factory import VideoSpec, make_video

from dfpanel.errors import ConfigError
from dfpanel.extract.cache import INDEX_FILE, REPORT_FILE, CacheFullError, EntryWriter
from dfpanel.extract.run import remove_stale_temp, run_extraction
from dfpanel.extract.video import ExtractConfig
from dfpanel.index.manifest import VideoRecord, write_manifest

CFG = ExtractConfig(frames=16, clip_len=8)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    make_video(root / "a.mp4", VideoSpec(seconds=1.2, click_at=0.6))
    make_video(root / "b.mp4", VideoSpec(seconds=1.2, seed=1))
    return root


def _manifest(root: Path, path: Path, n: int) -> Path:
    rows = [VideoRecord(id=f"v{i}", path="a.mp4" if i % 2 else "b.mp4", label=0, fake_type="real", split="train",
                        dataset="folder", group=f"g{i}", root=str(root)) for i in range(n)]
    write_manifest(rows, path)
    return path


def _rows(out: Path) -> int:
    return (out / INDEX_FILE).read_text().count("\n") if (out / INDEX_FILE).is_file() else 0


def _start_and_kill(videos: Path, tmp_path: Path, sig: int, n: int = 12):
    manifest = _manifest(videos, tmp_path / "m.jsonl", n)
    out = tmp_path / "cache"
    cmd = [sys.executable, "-m", "dfpanel", "extract", str(manifest), "--out", str(out), "--frames", "16",
           "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env_with_src(), start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and _rows(out) < 1:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read().decode()
        assert _rows(out) < n, "the run finished before it could be stopped"
        assert len(session_members(proc.pid)) >= 3  # the run, its fork server and workers (+ resource tracker)
        proc.send_signal(sig)  # the parent only, as `kill PID` does
        rc = proc.wait(timeout=60)
        text = proc.stdout.read().decode()
        deadline = time.time() + 10
        while time.time() < deadline and session_members(proc.pid):
            time.sleep(0.2)
        left = session_members(proc.pid)
        return manifest, out, rc, text, left
    finally:
        for pid in session_members(proc.pid):  # never leave this test's processes behind
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _resumes(manifest: Path, out: Path, n: int) -> None:
    before = _rows(out)
    summary = run_extraction(manifest, out, CFG, progress=False)
    assert summary["skipped"] == before and summary["ok"] == n - before and summary["failed"] == 0
    ids = [json.loads(line)["id"] for line in (out / INDEX_FILE).read_text().splitlines()]
    assert sorted(ids) == sorted(f"v{i}" for i in range(n))  # each video once
    assert not list(out.glob("folder/.tmp-*"))


# -- 1. signals: no orphans, a clean stop, resume ---------------------------------------------------


def test_sigterm_stops_a_worker_run_cleanly_leaves_no_process_and_resumes(videos, tmp_path):
    manifest, out, rc, text, left = _start_and_kill(videos, tmp_path, signal.SIGTERM)
    assert rc == 143, text
    assert "interrupted" in text and "re-run the same command to resume" in text
    assert left == [], f"processes outlived the run: {left}"
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["runs"][-1]["interrupted"] == "SIGTERM" and report["failures"] == {}  # nothing failed for it
    _resumes(manifest, out, 12)


@pytest.mark.slow
def test_sigkill_of_the_parent_takes_fork_server_and_workers_down_and_resumes(videos, tmp_path):
    manifest, out, rc, text, left = _start_and_kill(videos, tmp_path, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert left == [], f"processes outlived the run: {left}"
    _resumes(manifest, out, 12)


# -- 2. --frames bounded; memory ~one clip of full frames -------------------------------------------


def test_frames_has_a_clear_upper_bound(tmp_path, capsys):
    from dfpanel.cli import main
    from dfpanel.extract.spec import MAX_FRAMES, InputSpec

    ExtractConfig(frames=MAX_FRAMES)
    with pytest.raises(ConfigError, match=f"frames=100000 must be at most {MAX_FRAMES}"):
        ExtractConfig(frames=100000)
    with pytest.raises(ConfigError, match="at most"):
        InputSpec.from_dict({"frames": MAX_FRAMES + 1})
    (tmp_path / "m.jsonl").write_text("")
    assert main(["extract", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "c"), "--frames", "100000"]) == 2
    err = capsys.readouterr().err
    assert "at most" in err and "Traceback" not in err


def test_extract_video_holds_about_one_clip_of_full_frames(tmp_path, monkeypatch):
    """1280x720, 32 frames in 4 clips of 8: a full frame is 2.76 MB, all 32 are 88 MB. At most one
    clip of decoded full frames may be alive at any time (the crops' regions are kept instead)."""
    import weakref

    from dfpanel.extract.decode import VideoReader
    from dfpanel.extract.video import extract_video

    make_video(tmp_path / "hd.mp4", VideoSpec(seconds=2.0, size=(1280, 720), face_height=240))
    alive, most = [0], [0]
    to_rgb = VideoReader._to_rgb

    def counted(self, frame):
        rgb = to_rgb(self, frame)
        alive[0] += 1
        most[0] = max(most[0], alive[0])
        weakref.finalize(rgb, lambda: alive.__setitem__(0, alive[0] - 1))
        return rgb

    monkeypatch.setattr(VideoReader, "_to_rgb", counted)
    tracks = extract_video(tmp_path / "hd.mp4", ExtractConfig(frames=32, clip_len=8))
    assert len(tracks[0][0].frames) == 32
    assert most[0] <= 8 + 1, f"{most[0]} full 1280x720 frames held at once; one clip is 8"


# -- 3. a full disk stops the run, resumably ---------------------------------------------------------


def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["entry", "index"])
def test_a_full_disk_stops_the_run_with_one_line_and_resumes(videos, tmp_path, monkeypatch, capsys, where):
    import dfpanel.extract.run as run_mod
    from dfpanel.cli import main

    manifest = _manifest(videos, tmp_path / "m.jsonl", 3)
    out = tmp_path / "cache"
    if where == "entry":
        monkeypatch.setattr(EntryWriter, "add_crop", _enospc)  # full storage
        monkeypatch.setattr(EntryWriter, "add_file", _enospc)  # compact storage (the default)
    else:
        monkeypatch.setattr(run_mod, "append_index_row", _enospc)
    with pytest.raises(CacheFullError, match=f"no space left on the disk of the cache folder {out}"):
        run_extraction(manifest, out, CFG, progress=False)
    code = main(["extract", str(manifest), "--out", str(out), "--frames", "16", "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0 and "no space left" in err and str(out) in err and "Traceback" not in err
    assert not list(out.glob("folder/.tmp-*"))  # no half-written entry
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["failures"] == {}  # not a failed video: the disk's fault
    monkeypatch.undo()  # space freed
    summary = run_extraction(manifest, out, CFG, progress=False)
    assert (summary["ok"], summary["failed"]) == (3, 0)


@pytest.mark.slow
def test_a_real_full_tmpfs_stops_the_run_and_resumes_once_space_is_freed(videos, tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}): needs root")
    try:
        manifest = _manifest(videos, tmp_path / "m.jsonl", 3)
        out = mnt / "cache"
        with pytest.raises(CacheFullError, match=str(out)):
            run_extraction(manifest, out, CFG, progress=False)
        assert not list(out.glob("folder/.tmp-*"))
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        summary = run_extraction(manifest, out, CFG, progress=False)
        assert summary["failed"] == 0 and summary["ok"] + summary["skipped"] == 3
        assert _rows(out) == 3
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# -- 4. temp entries: a killed run's go at once, a live run's stay -----------------------------------

_WRITER = """
import sys, time
from dfpanel.extract.cache import EntryWriter
w = EntryWriter(sys.argv[1], "folder", "v~1")
print(w.tmp.name, flush=True)
time.sleep(120)
"""


def _writer(out: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(out)], stdout=subprocess.PIPE, text=True, env=env_with_src())
    return proc, out / "folder" / proc.stdout.readline().strip()


def test_a_dead_runs_temp_entry_is_removed_at_once_and_a_live_runs_is_kept(tmp_path):
    out = tmp_path / "cache"
    dead, dead_tmp = _writer(out)
    live, live_tmp = _writer(out)
    try:
        dead.kill()
        dead.wait()
        assert dead_tmp.is_dir() and live_tmp.is_dir()
        other_host = out / "folder" / ".tmp-v~elsewhere~1.1~abcd1234"
        legacy_young = out / "folder" / ".tmp-y-2"
        for d in (other_host, legacy_young):
            (d / "crops").mkdir(parents=True)
        assert remove_stale_temp(out) == 1
        assert not dead_tmp.exists()  # seconds old, its process gone: removed
        assert live_tmp.is_dir()  # a concurrent run's, in progress: kept
        assert other_host.is_dir() and legacy_young.is_dir()  # cannot be checked: kept while young
        os.utime(other_host, (0, 0))
        assert remove_stale_temp(out) == 1 and not other_host.exists() and live_tmp.is_dir()
    finally:
        live.kill()
        live.wait()
        dead.stdout.close()
        live.stdout.close()
