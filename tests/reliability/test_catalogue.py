"""The catalogue of bad inputs as a test suite (issue #11): every input in conftest.BUILDERS through
`index`, `extract` and `detect`, and bad caches through `train`, each checked for its documented
outcome: the exit code, one line naming the file, no Traceback, nothing written outside the output
folder, nothing half-written left behind.

The default run keeps one case of each kind (conftest.DEFAULT_CASES); the full matrix is slow."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import train_fakes  # noqa: F401  (registers the tiny fakeframe specialist used by the train cases)
from factories import cache_on_disk
from reliability_inputs import DEFAULT_CASES, KIND, half_written, run_cli, snapshot

from dfpanel.cli import main
from dfpanel.report.schema import validate_report


def cases(names=None):
    """Parametrize over catalogue cases: the default ones plain, the rest marked slow."""
    names = names or list(KIND)
    return [pytest.param(n, id=n) if n in DEFAULT_CASES else pytest.param(n, id=n, marks=pytest.mark.slow) for n in names]


def run(capsys, args: list[str]) -> tuple[int, str, str]:
    code = main(args)
    cap = capsys.readouterr()
    assert "Traceback" not in cap.out + cap.err, cap.out + cap.err
    return code, cap.out, cap.err


def lines_naming(text: str, name: str) -> list[str]:
    return [ln for ln in text.splitlines() if name in ln]


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """tmp/ws: inputs in ws/in, outputs in ws/out, cwd = ws (a stray relative write lands in ws)."""
    ws = tmp_path / "ws"
    (ws / "in").mkdir(parents=True)
    monkeypatch.chdir(ws)
    return ws


def assert_contained(ws: Path, before: set[str], out: Path) -> None:
    """Only `out` changed in the workspace, and no half-written file is left in it."""
    outside = {p for p in snapshot(ws) - before if not (ws / p).is_relative_to(out)}
    assert not outside, f"written outside {out}: {sorted(outside)}"
    assert not half_written(ws), half_written(ws)


# ------------------------------------------------------------------------------------------ detect

# case -> (exit code, report status, what the error or explanation must say)
DETECT = {
    "zero_byte": (1, "failed", "empty"),
    "truncated_30": (1, "failed", "corrupt|unreadable|truncated"),
    "truncated_5": (1, "failed", "corrupt|unreadable|truncated"),
    "random_bytes": (1, "failed", "corrupt|unreadable"),
    "text_txt": (1, "failed", "not a video"),  # defect: a text file probes as a tty "video" (no face)
    "text_as_mp4": (1, "failed", "not a video|corrupt|unreadable"),  # video extension: corrupt is documented
    "png": (1, "failed", "no video stream|not a video"),
    "jpeg": (1, "failed", "no video stream|not a video"),
    "audio_only": (1, "failed", "no video stream"),
    "no_face": (1, "failed", "no face"),
    "one_frame": (1, "failed", "still image, not a video"),
    "truncated_intact_index": (None, None, "truncated"),  # analysed with the truncation said, or refused as truncated
    "three_faces": (0, "analysed", None),
    "short_0_2s": (0, "analysed", None),
    "rotated": (0, "analysed", None),
    "vfr": (0, "analysed", None),
    "4k": (0, "analysed", None),
    "unicode_path": (0, "analysed", None),
}


@pytest.mark.parametrize("case", cases(list(DETECT)))
def test_detect_one_input(case, bad_inputs, tiny_weights, workspace, capsys):
    import re

    src = bad_inputs[case]
    video = workspace / "in" / src.name
    shutil.copy(src, video)
    out = workspace / "out"
    before = snapshot(workspace)
    code, stdout, stderr = run(capsys, ["detect", str(video), "--weights", str(tiny_weights), "--out", str(out),
                                        "--frames", "8"])
    want_code, want_status, says = DETECT[case]
    reports = list(out.rglob("report.json"))
    assert len(reports) == 1, (stdout, stderr)
    report = validate_report(json.loads(reports[0].read_text(encoding="utf-8")))
    if want_code is not None:
        assert code == want_code, stdout + stderr
        assert report["status"] == want_status, report.get("error")
    if report["status"] == "failed":
        assert code == 1
        # one line on stdout for the video, one line on stderr naming the file and the reason
        assert len(lines_naming(stdout, video.name)) == 1, stdout
        err = lines_naming(stderr, video.name)
        assert len(err) == 1, stderr
        assert re.search(says, err[0]), err[0]
        assert re.search(says, report["error"]["message"]), report["error"]
    else:
        assert code == 0, stdout + stderr
        assert len(lines_naming(stdout, video.name)) == 1, stdout
        assert report["verdict"] in ("real", "fake", "uncertain")
        if says:  # analysed despite the fault: the explanation must say so
            assert any(says in s for s in report["explanation"]), report["explanation"]
    assert_contained(workspace, before, out)
    assert video.read_bytes() == src.read_bytes()  # the input is never touched


def test_rotated_report_gives_the_displayed_size(bad_inputs, tiny_weights, workspace, capsys):
    """A phone clip stored 320x240 with a 90-degree display matrix is shown 240x320; the report says
    what the user sees (defect: it records the stored size)."""
    video = workspace / "in" / "phone.mp4"
    shutil.copy(bad_inputs["rotated"], video)
    code, _, _ = run(capsys, ["detect", str(video), "--weights", str(tiny_weights), "--out", "out", "--frames", "8"])
    report = json.loads((workspace / "out" / "phone" / "report.json").read_text())
    assert code == 0 and report["status"] == "analysed"
    assert (report["video"]["width"], report["video"]["height"]) == (240, 320)


def _folder_of(bad_inputs, good_videos, ws: Path, names) -> Path:
    folder = ws / "in" / "videos"
    folder.mkdir()
    for g in good_videos[:1]:
        shutil.copy(g, folder / g.name)
    for n in names:
        shutil.copy(bad_inputs[n], folder / bad_inputs[n].name)
    return folder


def test_detect_folder_names_each_bad_file_once(bad_inputs, good_videos, tiny_weights, workspace, capsys):
    names = ["truncated_30", "png", "text_txt"]
    folder = _folder_of(bad_inputs, good_videos, workspace, names)
    before = snapshot(workspace)
    code, stdout, stderr = run(capsys, ["detect", str(folder), "--weights", str(tiny_weights), "--out", "out",
                                        "--frames", "8"])
    assert code == 1, stdout + stderr
    assert len(lines_naming(stderr, bad_inputs["truncated_30"].name)) == 1, stderr
    for ignored in ("png", "text_txt"):  # not videos: not found in a folder, so not named
        assert not lines_naming(stdout + stderr, bad_inputs[ignored].name), (stdout, stderr)
    out = workspace / "out"
    assert json.loads((out / good_videos[0].stem / "report.json").read_text())["status"] == "analysed"
    assert (out / "summary.csv").is_file() and (out / "summary.html").is_file()
    assert_contained(workspace, before, out)


@pytest.mark.slow
def test_detect_folder_of_the_whole_catalogue(bad_inputs, good_videos, tiny_weights, workspace, capsys):
    names = list(KIND)
    folder = _folder_of(bad_inputs, good_videos, workspace, names)
    before = snapshot(workspace)
    code, stdout, stderr = run(capsys, ["detect", str(folder), "--weights", str(tiny_weights), "--out", "out",
                                        "--frames", "8"])
    assert code == 1
    for n in names:
        name = bad_inputs[n].name
        # Inside a folder, what opens but is no video (an image, audio only, one frame) is skipped
        # silently; only a file with a video extension that does not open is a failure (discovery.py).
        if KIND[n] == "ignored" or n in ("audio_only", "one_frame"):
            assert not lines_naming(stderr, name), (name, stderr)
        elif KIND[n] == "bad":
            assert len(lines_naming(stderr, name)) == 1, (name, stderr)
        elif KIND[n] == "video":
            assert len(lines_naming(stdout, name)) == 1, (name, stdout)
    assert_contained(workspace, before, workspace / "out")


@pytest.mark.parametrize("frames", ["0", "-3", "1000000"])
def test_detect_frames_out_of_range_is_a_usage_error(frames, good_videos, tiny_weights, workspace, capsys):
    """--frames must be a small positive count (defect: no upper bound; a million frames decodes for ever)."""
    code, stdout, stderr = run(capsys, ["detect", str(good_videos[0]), "--weights", str(tiny_weights), "--out", "out",
                                        "--frames", frames])
    assert code == 2, stdout + stderr
    assert "--frames" in stdout + stderr
    assert not (workspace / "out").exists() or not list((workspace / "out").rglob("report.json"))


@pytest.mark.slow
def test_detect_folder_with_a_symlink_loop_finishes(good_videos, tiny_weights, workspace):
    """A folder holding a link to itself: the walk must not loop or crash (defect being fixed)."""
    folder = workspace / "in" / "videos"
    folder.mkdir()
    shutil.copy(good_videos[0], folder / good_videos[0].name)
    os.symlink(folder, folder / "loop")
    proc = run_cli(["detect", str(folder), "--weights", str(tiny_weights), "--out", str(workspace / "out"),
                    "--frames", "8"], cwd=workspace, timeout=240)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(lines_naming(proc.stdout, good_videos[0].name)) == 1, proc.stdout


# ------------------------------------------------------------------------------------------- index


def _dataset(ws: Path, bad: Path, good: Path) -> Path:
    root = ws / "in" / "ds"
    (root / "real").mkdir(parents=True)
    (root / "fake").mkdir()
    shutil.copy(good, root / "real" / "good.mp4")
    shutil.copy(good, root / "fake" / "good.mp4")
    shutil.copy(bad, root / "real" / bad.name)
    return root


@pytest.mark.parametrize("case", cases())
def test_index_then_extract(case, bad_inputs, good_videos, workspace, capsys):
    """index lists every file with a video extension (it does not decode them) and skips the rest;
    extract then records each bad one as failed, one row naming it, and exits 1 under --strict."""
    from dfpanel.index.manifest import read_manifest

    src = bad_inputs[case]
    root = _dataset(workspace, src, good_videos[0])
    before = snapshot(workspace)
    manifest = workspace / "out" / "m.jsonl"
    code, stdout, stderr = run(capsys, ["index", str(root), "--out", str(manifest)])
    assert code == 0, stdout + stderr
    rows = read_manifest(manifest)
    paths = {r.path for r in rows}
    listed = f"real/{src.name}" in paths
    assert listed == (src.suffix == ".mp4"), paths
    cache = workspace / "out" / "cache"
    code, stdout, stderr = run(capsys, ["extract", str(manifest), "--out", str(cache), "--frames", "8",
                                        "--clip-len", "4", "--no-progress", "--strict"])
    report = json.loads((cache / "extract_report.json").read_text(encoding="utf-8"))
    failed = {f["id"]: f for f in report["failures"].values()}
    bad_id = next((r.id for r in rows if r.path == f"real/{src.name}"), None)
    if KIND[case] == "bad" and listed:
        assert code == 1, stdout + stderr
        assert set(failed) == {bad_id}, failed
        assert src.name in failed[bad_id]["reason"].replace("\n", "")
        assert len(lines_naming(stdout, bad_id)) == 1, stdout  # one row in the failures table
        assert not list(cache.glob(f"*/{bad_id}")), "no entry for a failed video"
    else:
        assert code == 0, stdout + stderr
        assert not failed, failed
    if case == "truncated_intact_index":
        meta = json.loads(next(cache.glob(f"*/{bad_id}/meta.json")).read_text())
        assert meta["extra"]["truncated"] is True, meta["extra"]
    assert_contained(workspace, before, workspace / "out")


@pytest.mark.slow
def test_index_symlink_loop_finishes(good_videos, workspace, capsys):
    root = workspace / "in" / "ds"
    (root / "real").mkdir(parents=True)
    (root / "fake").mkdir()
    shutil.copy(good_videos[0], root / "real" / "a.mp4")
    shutil.copy(good_videos[1], root / "fake" / "b.mp4")
    os.symlink(root / "real", root / "real" / "loop")
    proc = run_cli(["index", str(root), "--out", str(workspace / "out" / "m.jsonl")], cwd=workspace, timeout=120)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len((workspace / "out" / "m.jsonl").read_text().splitlines()) == 2


def test_index_out_is_a_folder(good_videos, workspace, capsys):
    """--out naming an existing folder: one line saying so, exit 2, the folder untouched (defect being fixed)."""
    root = _dataset(workspace, good_videos[1], good_videos[0])
    target = workspace / "out"
    target.mkdir()
    code, stdout, stderr = run(capsys, ["index", str(root), "--out", str(target)])
    assert code == 2, stdout + stderr
    assert len(lines_naming(stderr, str(target))) == 1, stderr
    assert list(target.iterdir()) == []


class _FullDisk:
    """A file whose writes fail with ENOSPC, as on a full disk."""

    def __init__(self, fh):
        self._fh = fh

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    writelines = write

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()
        return False

    def __iter__(self):
        return iter(self._fh)


@pytest.fixture
def full_disk(monkeypatch):
    """Make every file opened for writing under a folder fail with ENOSPC. (Never point a command at
    /dev/full: an atomic write renames its temp file over the device node.)"""
    import builtins
    import io

    real_open = builtins.open

    def make(folder: Path):
        folder = folder.resolve()

        def fake_open(file, mode="r", *args, **kwargs):
            fh = real_open(file, mode, *args, **kwargs)
            if not any(m in mode for m in "wax+"):
                return fh
            target = os.readlink(f"/proc/self/fd/{file}") if isinstance(file, int) else os.path.abspath(file)
            return _FullDisk(fh) if Path(target).is_relative_to(folder) else fh

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(io, "open", fake_open)

    return make


def test_index_full_disk_is_one_line(good_videos, workspace, capsys, full_disk):
    """The manifest cannot be written (disk full): one line naming it, no Traceback, nothing half-written."""
    root = _dataset(workspace, good_videos[1], good_videos[0])
    out = workspace / "out"
    out.mkdir()
    full_disk(out)
    code, stdout, stderr = run(capsys, ["index", str(root), "--out", str(out / "m.jsonl")])
    assert code in (1, 2), stdout + stderr
    assert len(lines_naming(stderr, "m.jsonl")) == 1, stderr
    assert "space" in stderr.lower()
    assert list(out.iterdir()) == [], "nothing half-written"


# ------------------------------------------------------------------------------------------- train

TINY = ["model.specialist=fakeframe", "model.backbone=null", "model.pretrained=null", "model.image_size=null",
        "model.dropout=null", "data.dataset=null", "data.max_videos=null", "data.frames_per_video=null",
        "data.val_frames_per_video=null", "data.batch_size=8", "optim.lr=0.05", "trainer.max_epochs=1",
        "trainer.log_every_n_steps=1"]


def train_args(cache: Path, out: Path, *extra: str) -> list[str]:
    args = ["train", "--config", "cm/tiny_ffpp", "--data", str(cache), "--out", str(out), "--quiet"]
    for s in [*TINY, *extra]:
        args += ["--set", s]
    return args


def _bad_cache(kind: str, ws: Path, good_videos) -> tuple[Path, str]:
    """A cache spoiled one way; returns it and the path the error line must name."""
    cache = ws / "in" / "cache"
    if kind == "empty":
        cache.mkdir()
        return cache, str(cache)
    if kind == "wrong_folder":  # a folder of videos passed as the cache
        cache.mkdir()
        shutil.copy(good_videos[0], cache / "clip.mp4")
        return cache, str(cache)
    cache_on_disk(cache)
    entry = min(p for p in (cache / "ffpp").iterdir() if p.name.startswith("ffpp_train"))
    if kind == "missing_meta":
        (entry / "meta.json").unlink()
        return cache, str(entry / "meta.json")
    if kind == "corrupt_crop":
        crop = min((entry / "crops").glob("*.png"))
        crop.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
        return cache, str(crop)
    raise ValueError(kind)


TRAIN_CASES = ["empty", "wrong_folder", "missing_meta", "corrupt_crop"]


@pytest.mark.parametrize(
    "kind", [pytest.param(k, id=k, marks=() if k in ("empty", "corrupt_crop") else pytest.mark.slow) for k in TRAIN_CASES]
)
def test_train_on_a_bad_cache(kind, good_videos, workspace, capsys):
    cache, named = _bad_cache(kind, workspace, good_videos)
    before = snapshot(workspace)
    out = workspace / "out" / "run"
    code, stdout, stderr = run(capsys, train_args(cache, out))
    assert code == 2, stdout + stderr
    assert len(lines_naming(stderr, named)) == 1 and len(stderr.strip().splitlines()) == 1, stderr
    assert not (out / "best.safetensors").exists()
    assert_contained(workspace, before, workspace / "out")
