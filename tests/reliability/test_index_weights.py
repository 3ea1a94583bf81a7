"""Reliability of `dfpanel weights fetch`, weights folders and `dfpanel index` (issue #11): hostile
sidecars, symlinked dataset trees, bad --out paths, and fuzzed dataset metadata. Every user mistake is a
one-line DfpanelError naming the file; anything else is a bug."""

from __future__ import annotations

import functools
import http.server
import json
import logging
import os
import threading
from pathlib import Path

import pytest

from dfpanel.cli import main
from dfpanel.errors import DataError, DfpanelError, WeightsError

# --------------------------------------------------------------------------------- weights fetch


@pytest.fixture(scope="module")
def cm_weights(tmp_path_factory):
    """A tiny CM specialist saved once: (path, sidecar dict)."""
    from dfpanel.models.specialists.base import create_specialist
    from dfpanel.weights.io import save_weights

    folder = tmp_path_factory.mktemp("cm")
    path = save_weights(create_specialist("cm", backbone="tiny", image_size=64), folder / "cm_v1.safetensors",
                        {"stage": "dfdc"})
    return path, json.loads(path.with_suffix(".json").read_text())


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args, **kwargs):
        pass


@pytest.fixture()
def site(tmp_path, monkeypatch, cm_weights):
    """Serve a folder on 127.0.0.1: (folder, base URL, sha256 of the weights). The cache is per test."""
    from dfpanel.weights.io import file_sha256

    monkeypatch.setenv("DFPANEL_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "site"
    folder.mkdir()
    path, _ = cm_weights
    (folder / path.name).write_bytes(path.read_bytes())
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}", file_sha256(path)
    finally:
        server.shutdown()
        server.server_close()


def _publish_sidecar(folder: Path, cm_weights, name: str, **changes) -> str:
    _, side = cm_weights
    (folder / name).write_text(json.dumps({**side, **changes}))
    return name


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_fetch_refuses_a_sidecar_specialist_that_is_a_path(site, cm_weights, tmp_path, capsys):
    folder, base, sha = site
    side = _publish_sidecar(folder, cm_weights, "evil.json", specialist="../../x")
    out = tmp_path / "a" / "b" / "weights"
    code = main(["weights", "fetch", f"{base}/cm_v1.safetensors", "--sha256", sha, "--out", str(out),
                 "--sidecar-url", f"{base}/{side}"])
    assert code == 2
    err = _one_line_error(capsys)
    assert "evil.json" in err and "'../../x'" in err and "not one of" in err
    assert not list(tmp_path.rglob("x.json")) and not list(tmp_path.rglob("x.safetensors"))
    assert not out.exists()


def test_fetch_refuses_a_sidecar_that_disagrees_with_the_weights_header(site, cm_weights, tmp_path):
    from dfpanel.weights.install import fetch_weights

    folder, base, sha = site
    side = _publish_sidecar(folder, cm_weights, "bg.json", specialist="bg")
    with pytest.raises(WeightsError, match=r"bg\.json: sidecar names specialist 'bg' but the weights .* hold 'cm'"):
        fetch_weights(f"{base}/cm_v1.safetensors", sha256=sha, out=tmp_path / "w", sidecar_url=f"{base}/{side}",
                      progress=False)
    assert not (tmp_path / "w").exists()


def test_fetch_installs_under_the_registry_name(site, cm_weights, tmp_path):
    from dfpanel.weights.install import fetch_weights

    folder, base, sha = site
    side = _publish_sidecar(folder, cm_weights, "upper.json", specialist="CM")
    installed = fetch_weights(f"{base}/cm_v1.safetensors", sha256=sha, out=tmp_path / "w",
                              sidecar_url=f"{base}/{side}", progress=False)
    assert installed == tmp_path / "w" / "cm.safetensors" and sorted(os.listdir(tmp_path / "w")) == ["cm.json", "cm.safetensors"]


def test_fetch_out_that_is_a_file_is_one_line(site, cm_weights, tmp_path, capsys):
    folder, base, sha = site
    _publish_sidecar(folder, cm_weights, "cm_v1.json")
    out = tmp_path / "weights"
    out.write_text("not a folder")
    assert main(["weights", "fetch", f"{base}/cm_v1.safetensors", "--sha256", sha, "--out", str(out)]) == 2
    assert str(out) in _one_line_error(capsys)


# ------------------------------------------------------------------------ wrong specialist in a sidecar


@pytest.fixture()
def weights_folder(tmp_path, cm_weights):
    path, side = cm_weights
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "cm.safetensors").write_bytes(path.read_bytes())
    return folder, side


@pytest.mark.parametrize("named", ["bg", "cmx"])
def test_a_sidecar_naming_the_wrong_specialist_names_the_file(weights_folder, named):
    from dfpanel.inference.runners import load_runners
    from dfpanel.weights.io import load_specialist

    folder, side = weights_folder
    (folder / "cm.json").write_text(json.dumps({**side, "specialist": named}))
    for load in (lambda: load_specialist(folder / "cm.safetensors"), lambda: load_runners(folder)):
        with pytest.raises(WeightsError) as exc:
            load()
        msg = str(exc.value)
        assert str(folder / "cm.json") in msg and f"'{named}'" in msg and "\n" not in msg


def test_cli_detect_with_a_wrong_sidecar_is_one_line(weights_folder, tmp_path, capsys):
    folder, side = weights_folder
    (folder / "cm.json").write_text(json.dumps({**side, "specialist": "cmx"}))
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    code = main(["detect", str(video), "--weights", str(folder)])
    assert code == 2
    assert "cm.json" in _one_line_error(capsys)


# ------------------------------------------------------------------------------ index: symlinked trees


def _touch(root: Path, *relpaths: str) -> Path:
    for r in relpaths:
        (root / r).parent.mkdir(parents=True, exist_ok=True)
        (root / r).write_bytes(b"")
    return root


def _index(root, **kw):
    from dfpanel.index import index_dataset

    return index_dataset(root, "folder", probe_audio=False, **kw)


def test_folder_symlink_loop_indexes_each_video_once(tmp_path):
    root = _touch(tmp_path / "ds", "real/a.mp4", "real/p1/b.mp4", "fake/c.mp4")
    (root / "real" / "self").symlink_to(".")
    (root / "real" / "p1" / "up").symlink_to("..")
    rows = _index(root)
    assert sorted(r.path for r in rows) == ["fake/c.mp4", "real/a.mp4", "real/p1/b.mp4"]


def test_folder_link_into_fake_does_not_relabel_fakes_as_real(tmp_path):
    root = _touch(tmp_path / "ds", "real/a.mp4", "fake/Deepfakes/c.mp4")
    (root / "real" / "shared").symlink_to("../fake")
    (root / "real" / "c_again.mp4").symlink_to("../fake/Deepfakes/c.mp4")
    rows = {r.path: r for r in _index(root)}
    assert sorted(rows) == ["fake/Deepfakes/c.mp4", "real/a.mp4"]
    assert (rows["fake/Deepfakes/c.mp4"].label, rows["fake/Deepfakes/c.mp4"].fake_type) == (1, "Deepfakes")


def test_folder_link_leaving_the_root_is_followed_once_and_warned(tmp_path, caplog, capsys):
    outside = _touch(tmp_path / "elsewhere", "x.mp4", "sub/y.mp4")
    (outside / "sub" / "back").symlink_to("..")  # a loop outside the root too
    root = _touch(tmp_path / "ds", "real/a.mp4", "fake/c.mp4")
    (root / "real" / "ext").symlink_to(outside)
    (root / "fake" / "ext2").symlink_to(outside)  # the same real folder again: indexed once, as real
    notes: list[str] = []
    with caplog.at_level(logging.WARNING, logger="dfpanel.index"):
        rows = _index(root, notes=notes)
    assert sorted(r.path for r in rows) == ["fake/c.mp4", "real/a.mp4", "real/ext/sub/y.mp4", "real/ext/x.mp4"]
    assert len(notes) == 1 and "real/ext ->" in notes[0] and "leave" in notes[0]
    assert "leave" in caplog.text
    out = tmp_path / "m.jsonl"
    assert main(["index", str(root), "--out", str(out), "--dataset", "folder", "--no-probe-audio"]) == 0
    assert "symlink(s) that leave" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 4


# ------------------------------------------------------------------------------------ index --out


@pytest.fixture()
def folder_ds(tmp_path):
    return _touch(tmp_path / "ds", "real/a.mp4", "fake/c.mp4")


def test_index_out_that_is_a_folder_is_one_line_and_leaves_nothing(folder_ds, tmp_path, capsys):
    out = tmp_path / "outdir"
    out.mkdir()
    assert main(["index", str(folder_ds), "--out", str(out), "--no-probe-audio"]) == 2
    err = _one_line_error(capsys)
    assert str(out) in err and "folder" in err
    assert list(out.iterdir()) == [] and not list(tmp_path.glob("*.tmp"))


def test_index_out_that_is_a_device_or_pipe_is_refused_and_left_alone(folder_ds, tmp_path, capsys):
    """The manifest is written to a temp file and renamed onto --out: as root, `--out /dev/full`
    once replaced the device with a regular file. A FIFO stands in for a device here."""
    import stat

    out = tmp_path / "pipe"
    os.mkfifo(out)
    assert main(["index", str(folder_ds), "--out", str(out), "--no-probe-audio"]) == 2
    assert "not a regular file" in _one_line_error(capsys)
    assert stat.S_ISFIFO(out.stat().st_mode) and not list(tmp_path.glob("*.tmp"))


def test_index_out_under_a_file_is_one_line(folder_ds, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "sub" / "m.jsonl"
    assert main(["index", str(folder_ds), "--out", str(out), "--no-probe-audio"]) == 2
    assert "afile is a file" in _one_line_error(capsys)


def test_index_out_unwritable_is_one_line_and_leaves_no_temp_file(folder_ds, tmp_path, capsys, monkeypatch):
    from dfpanel.index import manifest

    out = tmp_path / "m.jsonl"
    out.write_text("old\n")

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(manifest.os, "replace", refuse)  # as on a read-only mount: the rename fails
    assert main(["index", str(folder_ds), "--out", str(out), "--no-probe-audio"]) == 2
    assert "Permission denied" in _one_line_error(capsys)
    assert out.read_text() == "old\n" and not (tmp_path / "m.jsonl.tmp").exists()


def test_index_out_in_a_read_only_folder_is_refused_up_front(folder_ds, tmp_path, capsys, monkeypatch):
    from dfpanel.index import manifest

    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(manifest.os, "access", lambda p, mode: False if Path(p) == ro else real_access(p, mode))
    assert main(["index", str(folder_ds), "--out", str(ro / "m.jsonl"), "--no-probe-audio"]) == 2
    assert "not writable" in _one_line_error(capsys)
    assert list(ro.iterdir()) == []


def test_write_manifest_duplicate_ids_leave_no_temp_file(tmp_path):
    from dfpanel.index.manifest import VideoRecord, write_manifest

    row = VideoRecord(id="a", path="a.mp4", label=0, fake_type="real", split="train", dataset="folder", group="a")
    with pytest.raises(DataError, match="duplicate video id"):
        write_manifest([row, row], tmp_path / "m.jsonl")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------- fuzzing the datasets' metadata

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Each dataset's own metadata files (tests/fixtures/index/<dataset>/), the targets of the mutations.
METADATA = {
    "ffpp": ["splits/train.json", "splits/val.json", "splits/test.json"],
    "dfdc": ["dfdc_train_part_0/metadata.json", "dfdc_train_part_2/metadata.json", "test/labels.csv"],
    "celebdf": ["List_of_testing_videos.txt"],
    "fakeavceleb": ["meta_data.csv"],
}
TARGETS = [(ds, f) for ds, files in METADATA.items() for f in files]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**20) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def mutated(draw, data: bytes, is_json: bool):
    """A damaged copy of a valid metadata file, as bytes."""
    kind = draw(st.sampled_from(["bytes", "truncate", "flip", "insert", "non_utf8", "line", "json"]
                                if is_json else ["bytes", "truncate", "flip", "insert", "non_utf8", "line"]))
    n = len(data)
    at = draw(st.integers(0, max(n - 1, 0)))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "truncate":
        return data[:at]
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:] if n else data
    if kind == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    if kind == "non_utf8":
        return data[:at] + b"\xff\xfe\xc3(" + data[at:]
    if kind == "line":  # a line replaced by random text: cells, separators, labels, quotes
        lines = data.split(b"\n")
        i = draw(st.integers(0, len(lines) - 1))
        alphabet = st.sampled_from(list("01,; \t\"'/\\.-_abcFAKEREALid") + ["..", "mp4", "\r", "\x00"])
        lines[i] = "".join(draw(st.lists(alphabet, max_size=20))).encode()
        return b"\n".join(lines)
    # json: a value of the wrong type at the top, or in place of one entry / key
    import json as _json

    doc = _json.loads(data)
    how = draw(st.sampled_from(["top", "entry", "drop", "key"]))
    if how == "top" or not doc:
        doc = draw(json_values)
    elif isinstance(doc, list):
        i = draw(st.integers(0, len(doc) - 1))
        if how == "drop":
            del doc[i]
        else:
            doc[i] = draw(json_values)
    else:
        key = draw(st.sampled_from(sorted(doc)))
        if how == "drop":
            entry = doc[key]
            if isinstance(entry, dict) and entry:
                del entry[draw(st.sampled_from(sorted(entry)))]
        elif how == "key":
            doc[draw(st.text(max_size=12))] = doc.pop(key)
        else:
            if isinstance(doc[key], dict) and doc[key] and draw(st.booleans()):
                doc[key][draw(st.sampled_from(sorted(doc[key])))] = draw(json_values)
            else:
                doc[key] = draw(json_values)
    return _json.dumps(doc, allow_nan=True).encode()


def _index_damaged(dataset: str, relpath: str, data) -> None:
    """Index a fixture tree with one metadata file damaged: it works (and the manifest round-trips),
    or fails with a one-line DfpanelError naming the file; any other exception fails the test."""
    import tempfile

    from fixtures.index_tree import FIXTURES, build

    from dfpanel.index import index_dataset
    from dfpanel.index.manifest import read_manifest, write_manifest

    damaged = data.draw(mutated((FIXTURES / dataset / relpath).read_bytes(), relpath.endswith(".json")), label="file")
    with tempfile.TemporaryDirectory() as tmp:
        root = build(dataset, Path(tmp))
        (root / relpath).write_bytes(damaged)
        try:
            rows = index_dataset(root, dataset, probe_audio=False)
        except DfpanelError as exc:
            msg = str(exc)
            assert "\n" not in msg, msg
            assert Path(relpath).name in msg or str(root) in msg, msg
            return
        out = Path(tmp) / "m.jsonl"
        write_manifest(rows, out)
        assert len(read_manifest(out)) == len(rows)
        assert all(not Path(r.path).is_absolute() and ".." not in Path(r.path).parts for r in rows)


FUZZ = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("dataset,relpath", TARGETS, ids=[f"{d}:{f}" for d, f in TARGETS])
@FUZZ
@given(data=st.data())
def test_fuzzed_metadata_indexes_or_fails_cleanly(dataset, relpath, data):
    _index_damaged(dataset, relpath, data)


@pytest.mark.slow
@pytest.mark.parametrize("dataset,relpath", TARGETS, ids=[f"{d}:{f}" for d, f in TARGETS])
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_metadata_indexes_or_fails_cleanly_many(dataset, relpath, data):
    _index_damaged(dataset, relpath, data)


def test_fakeavceleb_metadata_path_leaving_the_root_is_refused(tmp_path):
    from fixtures.index_tree import build

    from dfpanel.index import index_dataset

    root = build("fakeavceleb", tmp_path)
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"")
    meta = root / "meta_data.csv"
    lines = meta.read_text().splitlines()
    lines.append("id00076,-,-,real,A,RealVideo-RealAudio,African,men,../../../../../secret.mp4,"
                 "FakeAVCeleb/RealVideo-RealAudio/African/men/id00076")
    meta.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"meta_data\.csv:{len(lines)}: path .* leaves the dataset folder"):
        index_dataset(root, "fakeavceleb")


def test_ffpp_split_id_with_an_underscore_is_named(tmp_path):
    from fixtures.index_tree import build

    from dfpanel.index import index_dataset

    root = build("ffpp", tmp_path)
    (root / "splits" / "val.json").write_text('[["720", "6_72"]]')
    with pytest.raises(DataError, match=r"val\.json: entry 0 is \['720', '6_72'\]"):
        index_dataset(root, "ffpp")


@pytest.mark.parametrize("dataset,relpath", [("fakeavceleb", "meta_data.csv"), ("dfdc", "test/labels.csv")])
def test_csv_with_an_unmatched_quote_in_a_big_file_is_named(tmp_path, dataset, relpath):
    from fixtures.index_tree import build

    from dfpanel.index import index_dataset

    root = build(dataset, tmp_path)
    path = root / relpath
    lines = path.read_text().splitlines()
    lines[1] = '"' + lines[1]  # the quote is never closed: the rest of the file becomes one cell
    path.write_text("\n".join(lines + [lines[2]] * 10000) + "\n")  # > csv's 128 KiB field limit
    with pytest.raises(DataError, match=rf"{path.name}: not valid CSV"):
        index_dataset(root, dataset)
