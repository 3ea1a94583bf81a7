"""Sharded caches: `dfpanel cache pack` writes WebDataset tar shards, `views.stream` reads them back as
exactly the samples of the cache datasets, split across DataLoader workers and DDP ranks, and
`dfpanel train --data SHARDS` trains from them."""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from collections import Counter

import numpy as np
import pytest
import torch
from factories import cache_on_disk, cache_video, memory_entry, voice
from torch.utils.data import DataLoader
from train_fakes import FakeFrameSpecialist, tiny_config

from dfpanel.cli import main
from dfpanel.errors import ConfigError, DataError
from dfpanel.extract.cache import FaceTrackCache, read_cache_spec
from dfpanel.extract.shards import (
    MIN_SHARD_SIZE,
    SHARDS_FILE,
    ShardSet,
    entry_files,
    is_shard_set,
    pack_cache,
    parse_size,
    rel_of_ext,
    sample_key,
)
from dfpanel.models.specialists.base import specialist_class
from dfpanel.train.augment import CropAugmenter
from dfpanel.train.config import load_stage_config
from dfpanel.views.samples import FrameSampleDataset, dataset_for, select_rows
from dfpanel.views.stream import ShardStreamDataset

FIVE = ("bg", "av", "cm", "rr", "tm")
TINY = dict(backbone="tiny", image_size=64, clip_len=4, pretrained=False)


def _sorted_rows(rows, split=None):
    return select_rows(rows, split=split)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """12 train videos (6 real, 6 fake) and 6 val, 4 frames each (two clips of 2 for clip samples)."""
    return cache_on_disk(tmp_path_factory.mktemp("cache"), counts={"train": (6, 6), "val": (3, 3)}, n_frames=4)


@pytest.fixture(scope="module")
def one_per_shard(cache, tmp_path_factory):
    """Every video alone in its shard (the smallest shard size holds less than one)."""
    out = tmp_path_factory.mktemp("one") / "shards"
    pack_cache(cache, out, MIN_SHARD_SIZE)
    return ShardSet(out)


def frame_base(shards: ShardSet, split: str = "train", **kwargs) -> FrameSampleDataset:
    rows = _sorted_rows(shards.rows(), split)
    return FrameSampleDataset(shards.base, rows, FakeFrameSpecialist().view, open_entry=shards.layout, **kwargs)


def indices(loader) -> list[int]:
    out = []
    for _, _, meta in loader:
        out += meta["index"].reshape(-1).tolist()
    return out


# ---- packing ---------------------------------------------------------------------------------------
def test_sizes_parse_and_a_bad_one_is_a_one_line_error(tmp_path, capsys):
    assert parse_size("500MB") == 500 * 10**6 and parse_size("1GB") == 10**9 and parse_size("64KB") == 64_000
    assert parse_size("1.5 gb") == 1_500_000_000 and parse_size("512MiB") == 512 * 2**20 and parse_size("20000") == 20000
    for bad in ("1XB", "GB", "-5MB", "1 GB 2"):
        with pytest.raises(ConfigError, match="not a size; write it like 500MB"):
            parse_size(bad)
    with pytest.raises(ConfigError, match="too small"):
        parse_size("1KB")
    assert main(["cache", "pack", str(tmp_path), "--out", str(tmp_path / "s"), "--shard-size", "12 parsecs"]) == 2
    err = capsys.readouterr().err
    assert "--shard-size '12 parsecs': not a size" in err and len(err.strip().splitlines()) == 1


def test_pack_keeps_under_the_size_with_every_video_once_in_webdataset_order(cache, tmp_path, capsys):
    out = tmp_path / "shards"
    assert main(["cache", "pack", str(cache), "--out", str(out), "--shard-size", "64KB"]) == 0
    assert "packed 18 videos into" in capsys.readouterr().out
    index = json.loads((out / SHARDS_FILE).read_text())
    assert index["n_videos"] == 18 and index["n_shards"] == len(index["shards"]) > 2
    assert json.loads((out / "input_spec.json").read_text()) == read_cache_spec(cache).to_dict()
    rows = {(r.dataset, r.id): r for r in FaceTrackCache(cache).rows()}
    seen = Counter()
    for rec in index["shards"]:
        path = out / rec["file"]
        assert path.stat().st_size == rec["size"] <= 64_000
        assert rec["n_videos"] == len(rec["rows"])
        with tarfile.open(path) as tf:  # a plain POSIX tar: `<key>.<ext>` members, a video's adjacent
            names = tf.getnames()
            keys = [n.split(".", 1)[0] for n in names]
            assert keys == sorted(keys, key=keys.index)  # each key's members form one run
            assert [r["key"] for r in rec["rows"]] == list(dict.fromkeys(keys))
            for r in rec["rows"]:
                row = rows[(r["dataset"], r["id"])]
                assert {k: r[k] for k in ("label", "split", "group", "chunk", "n_frames", "n_clips")} == \
                       {k: getattr(row, k) for k in ("label", "split", "group", "chunk", "n_frames", "n_clips")}
                files = {rel_of_ext(n.split(".", 1)[1]): tf.extractfile(n).read() for n in names
                         if n.split(".", 1)[0] == r["key"] and not n.split(".", 1)[1].startswith("_")}
                assert files == {rel: p.read_bytes() for rel, p in entry_files(cache / row.dir)}
                assert json.loads(tf.extractfile(f"{r['key']}._row.json").read())["id"] == row.id
                seen[(r["dataset"], r["id"])] += 1
    assert seen == Counter(rows.keys())  # every video once
    splits = [r["split"] for rec in index["shards"] for r in rec["rows"]]
    assert splits == sorted(splits, key=["train", "val"].index)  # a split reads few shards


def test_keys_and_member_names_survive_dots_slashes_and_underscores():
    assert sample_key("ffpp", "000_003") == "ffpp/000_003"
    key = sample_key("my.set", "a.b/c_d")
    assert "." not in key and key.count("/") == 1
    for rel in ("meta.json", "crops/000000.png", "_x/y.webp", "ünï code.wav", ".hidden"):
        from dfpanel.extract.shards import member_ext

        ext = member_ext(rel)
        assert "/" not in ext and not ext.startswith("_") and rel_of_ext(ext) == rel


def test_pack_resumes_and_rewrites_only_what_changed(cache, tmp_path):
    src = tmp_path / "cache"
    shutil.copytree(cache, src)
    out = tmp_path / "shards"
    first = pack_cache(src, out, 64_000)
    assert first["written"] == first["shards"] and not (out / ".pack-progress.jsonl").exists()
    before = {p.name: p.read_bytes() for p in out.glob("shard-*.tar")}
    (out / ".shard-000000.tar.123.abcd.tmp").write_bytes(b"half a shard from a killed pack")
    again = pack_cache(src, out, 64_000)
    assert again["reused"] == again["shards"] and again["written"] == 0
    assert not list(out.glob(".*.tmp"))
    # a re-extracted video: only its shard is written again (byte-identical otherwise: same bytes -> same tar)
    row = _sorted_rows(FaceTrackCache(src).rows(), "val")[0]
    meta = src / row.dir / "meta.json"
    meta.write_text(meta.read_text())
    third = pack_cache(src, out, 64_000)
    assert third["written"] == 1
    assert {p.name: p.read_bytes() for p in out.glob("shard-*.tar")} == before
    # a selection packs fewer shards and removes the leftovers of the larger pack
    train_only = pack_cache(src, out, 64_000, splits=["train"])
    assert train_only["videos"] == 12 and len(list(out.glob("shard-*.tar"))) == train_only["shards"]
    assert {r.split for r in ShardSet(out).rows()} == {"train"}


# ---- reading back ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def av_cache(tmp_path_factory):
    """Videos with speech (AV), 8 frames in clips of 4, crops cut from 320x240 frames as extract does."""
    root = tmp_path_factory.mktemp("av") / "cache"
    root.mkdir()
    (root / "index.jsonl").touch()
    for i in range(4):
        audio = voice(8 / 25 + 0.2, [(0.0, 8 / 25 + 0.1)], seed=i)
        entry, _ = memory_entry(n_frames=8, clip_len=4, audio=audio, seed=i, size=(320, 240))
        entry.meta.video_id, entry.meta.dataset = f"v{i}", "ffpp"
        cache_video(root, entry.meta, [entry.crop(p) for p in range(8)], entry.audio, label=i % 2, split="train")
    return root


@pytest.fixture(scope="module")
def compact_av_cache(av_cache, tmp_path_factory):
    """The same videos stored compact (context WebP scaled to face_px, a lossless native window)."""
    from dfpanel.extract.convert import convert_cache

    out = tmp_path_factory.mktemp("avc") / "cache"
    convert_cache(av_cache, out, face_px=48, native_size=64)
    return out


@pytest.mark.parametrize("store", ["full", "compact"])
def test_shard_entries_give_the_views_of_the_folder_for_every_specialist(store, av_cache, compact_av_cache, tmp_path):
    av_cache = av_cache if store == "full" else compact_av_cache
    pack_cache(av_cache, tmp_path / "s", MIN_SHARD_SIZE)
    shards = ShardSet(tmp_path / "s")
    rows = _sorted_rows(shards.rows())
    assert rows == _sorted_rows(FaceTrackCache(av_cache).rows())
    assert shards.input_spec == FaceTrackCache(av_cache).input_spec and shards.input_spec.store == store
    for name in FIVE:
        cls = specialist_class(name)
        view, gate = cls.view_for(**TINY), cls.gate_for(**TINY)
        kind = cls.sample_kind
        folder = dataset_for(kind)(av_cache, rows, view, clip_len=4, gate=gate)
        base = dataset_for(kind)(shards.base, rows, view, clip_len=4, gate=gate, open_entry=shards.layout)
        streamed = {meta["index"]: (x, y, meta) for x, y, meta in ShardStreamDataset(base, shards, mode="all")}
        assert sorted(streamed) == list(range(len(folder))) and len(folder) > 0
        for i in range(len(folder)):
            x, y, meta = folder[i]
            sx, sy, smeta = streamed[i]
            assert x.keys() == sx.keys() and all(torch.equal(x[k], sx[k]) for k in x), (name, i)
            assert torch.equal(y, sy) and meta == smeta, (name, i)
        if name == "av":
            assert any(not m["gate"] for _, _, m in streamed.values())  # speech: AV's gate lets clips through
    # the same augmentation hook, the same draws: the stream reads a split in index order here
    augment = CropAugmenter([{"name": "HorizontalFlip", "p": 0.5}, {"name": "RandomBrightnessContrast", "p": 0.5}])
    view = specialist_class("bg").view_for(**TINY)
    folder = FrameSampleDataset(av_cache, rows, view, augment=augment)
    base = FrameSampleDataset(shards.base, rows, view, augment=augment, open_entry=shards.layout)
    np.random.seed(3)
    a = [folder[i][0]["face"] for i in range(len(folder))]
    np.random.seed(3)
    b = [x["face"] for x, _, _ in ShardStreamDataset(base, shards, mode="all")]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("workers", [2, 3])
def test_workers_and_ranks_read_every_shard_once_and_every_sample_once(one_per_shard, workers):
    base = frame_base(one_per_shard)  # 12 videos x 4 frames, one video per shard
    got = []
    for rank in (0, 1):
        ds = ShardStreamDataset(base, one_per_shard, batch_size=2, num_workers=workers, rank=rank, world_size=2,
                                buffer_size=6, seed=5)
        loader = DataLoader(ds, batch_size=2, num_workers=workers)
        mine = indices(loader)
        assert len(mine) == len(ds) == 2 * len(loader) == 48 // 2  # every rank the same number of batches
        got += mine
    assert sorted(got) == list(range(48))  # none twice, none missing
    plan = ds.plan(0, 2)
    dealt = [j for reader in plan for j in reader]
    assert len(plan) == 2 * workers and sorted(dealt) == list(range(12))  # each shard to exactly one reader


def test_uneven_shards_still_give_every_rank_the_same_batches(cache, tmp_path):
    pack_cache(cache, tmp_path / "s", 52_000)  # 3 videos a shard: 12 train videos -> 4 shards, val 2
    shards = ShardSet(tmp_path / "s")
    base = frame_base(shards, per_video=None)
    # train: each of 3 readers yields q = 48 // 3 = 16 (whole batches of 4): 12 samples of 4 readers' worth
    counts = []
    for rank in (0, 1, 2):
        ds = ShardStreamDataset(base, shards, batch_size=4, rank=rank, world_size=3, buffer_size=4)
        got = indices(DataLoader(ds, batch_size=4))
        counts.append(len(got))
        assert len(got) == len(ds) == 16 and set(got) <= set(range(48))
    # val: nothing left out; the reader with less repeats some of its own
    vbase = frame_base(shards, "val")
    got = []
    for rank in (0, 1):
        ds = ShardStreamDataset(vbase, shards, mode="val", batch_size=4, rank=rank, world_size=2)
        mine = indices(DataLoader(ds, batch_size=4))
        assert len(mine) == len(ds)
        got.append(mine)
    assert len(got[0]) == len(got[1]) and set(got[0] + got[1]) == set(range(len(vbase)))
    with pytest.raises(ConfigError, match="fewer than the 3 rank"):  # 2 val shards cannot feed 3 ranks
        next(iter(ShardStreamDataset(vbase, shards, mode="val", rank=0, world_size=3)))


def test_shuffling_changes_between_epochs_and_is_deterministic_per_seed(one_per_shard):
    base = frame_base(one_per_shard)

    def epochs(seed, n=2):
        ds = ShardStreamDataset(base, one_per_shard, seed=seed, buffer_size=8)
        return [[m["index"] for _, _, m in ds] for _ in range(n)]

    first, second = epochs(1)
    assert first != second and sorted(first) == sorted(second) == list(range(48))
    assert epochs(1) == [first, second]
    assert epochs(2)[0] != first
    assert ShardStreamDataset(base, one_per_shard, mode="val").plan(0, 1) == [list(range(12))]  # val: in order


def test_balanced_streams_resample_both_classes_equally(tmp_path):
    cache = cache_on_disk(tmp_path / "c", counts={"train": (2, 8)}, n_frames=4)
    pack_cache(cache, tmp_path / "s", MIN_SHARD_SIZE)
    shards = ShardSet(tmp_path / "s")
    base = frame_base(shards)
    plain = [base.labels[m["index"]] for _, _, m in ShardStreamDataset(base, shards)]
    assert Counter(plain) == {0: 8, 1: 32}
    ds = ShardStreamDataset(base, shards, balanced=True, seed=0)
    drawn = [base.labels[m["index"]] for _ in range(10) for _, _, m in ds]
    assert len(drawn) == 400 and 0.42 < drawn.count(0) / len(drawn) < 0.58


@pytest.fixture
def http_url(one_per_shard):
    handler = functools.partial(_Quiet, directory=one_per_shard.base)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_a_shard_set_streams_from_file_and_http_urls(one_per_shard, http_url):
    local = [(m["index"], x["image"]) for x, _, m in ShardStreamDataset(frame_base(one_per_shard), one_per_shard, seed=3)]
    for url in (f"file://{one_per_shard.base}", http_url + "/", f"{http_url}/{SHARDS_FILE}"):
        assert is_shard_set(url)
        shards = ShardSet(url)
        assert shards.input_spec == one_per_shard.input_spec and len(shards.shards) == 18
        got = [(m["index"], x["image"]) for x, _, m in ShardStreamDataset(frame_base(shards), shards, seed=3)]
        assert [i for i, _ in got] == [i for i, _ in local]
        assert all(torch.equal(a, b) for (_, a), (_, b) in zip(got, local, strict=True))
    with pytest.raises(DataError, match="not a shard set"):
        ShardSet(http_url + "/nothing-here")


def test_a_truncated_corrupt_or_missing_shard_is_a_one_line_data_error_naming_it(one_per_shard, tmp_path):
    out = tmp_path / "s"
    shutil.copytree(one_per_shard.base, out)
    shards = ShardSet(out)
    name = shards.shards[3].file
    path = out / name
    data = path.read_bytes()

    def error() -> str:
        base = frame_base(shards)
        with pytest.raises(DataError) as info:
            list(ShardStreamDataset(base, shards, mode="all"))
        message = str(info.value)
        assert name in message and "\n" not in message
        return message

    path.write_bytes(data[: len(data) // 2 + 100])  # cut inside a member
    assert "truncated or corrupt" in error()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        boundary = tf.getmembers()[2].offset
    path.write_bytes(data[:boundary])  # cut between members: the tar reader sees a clean end
    assert "truncated or altered" in error()
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0x40  # inside a member's data: a valid tar of other bytes
    path.write_bytes(bytes(flipped))
    assert "corrupt shard (sha256" in error()
    path.unlink()
    assert "shard missing" in error()
    # through a DataLoader worker too, as `dfpanel train` prints it
    from dfpanel.cli import error_line

    with pytest.raises(DataError) as info:
        list(DataLoader(ShardStreamDataset(frame_base(shards), shards, num_workers=1), batch_size=4, num_workers=1))
    assert "Original Traceback" in str(info.value)
    assert error_line(info.value) == f"{path}: shard missing; pack the shards again or fetch it again"


# ---- training --------------------------------------------------------------------------------------
def test_dfpanel_train_streams_from_shards(cache, one_per_shard, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--config", "cm/tiny_ffpp", "--data", one_per_shard.base, "--out", str(out), "--quiet",
            "model.specialist=fakeframe", "model.backbone=null", "model.pretrained=null", "model.image_size=null",
            "model.dropout=null", "data.dataset=null", "data.max_videos=null", "data.frames_per_video=null",
            "data.val_frames_per_video=null", "data.batch_size=4", "data.num_workers=2", "optim.lr=0.05",
            "trainer.max_epochs=2", "trainer.log_every_n_steps=1"]
    assert main(argv) == 0
    result = json.loads((out / "result.json").read_text())
    run = json.loads((out / "run.json").read_text())
    assert result["global_step"] == 2 * 48 // 4  # every train sample once per epoch, in whole batches
    assert result["metrics"]["val_auc"] is not None
    assert run["input_spec"] == read_cache_spec(cache).to_dict()  # the spec travelled with the shards
    assert run["config"]["data"]["shards"] == one_per_shard.base and run["config"]["data"]["cache"] is None


def test_what_cannot_stream_is_a_one_line_config_error(cache, one_per_shard, capsys):
    base = ["data.cache=null", f"data.shards={one_per_shard.base}"]
    for extra, message in (
        (["pseudofakes.mode=mix"], "pseudofakes.mode mix cannot stream from shards"),
        (["data.paired=true"], "data.paired cannot stream from shards"),
        ([f"data.cache={cache}"], "data.cache and data.shards are both set"),
        (["data.shuffle_buffer=-1"], "data.shuffle_buffer must be >= 0"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_stage_config("cm/tiny_ffpp", [*base, *extra])
    with pytest.raises(ConfigError, match="data.val_shards needs data.shards"):
        load_stage_config("cm/tiny_ffpp", [f"data.val_shards={one_per_shard.base}"])
    assert main(["train", "--config", "cm/tiny_ffpp", "--data", "http://127.0.0.1:9/none"]) == 2
    err = capsys.readouterr().err
    assert "cannot read the shard index" in err and len(err.strip().splitlines()) == 1


def test_auto_chunk_order_from_shards_matches_the_cache(tmp_path):
    from test_train_run import _brightness_model

    from dfpanel.train.chunks import chunk_losses

    cache = cache_on_disk(tmp_path / "dfdc", dataset="dfdc", chunks=3, invert_chunks=(0, 2),
                          counts={"train": (6, 6), "val": (2, 2)}, n_frames=4)
    pack_cache(cache, tmp_path / "s", 64_000)
    cfg = tiny_config(cache, "fakeframe", "data.chunks=[0, 1, 2]", "data.chunk_sample=8")
    streamed = tiny_config(cache, "fakeframe", "data.chunks=[0, 1, 2]", "data.chunk_sample=8", "data.cache=null",
                           f"data.shards={tmp_path / 's'}")
    model = _brightness_model()
    a, b = chunk_losses(cfg, [0, 1, 2], model), chunk_losses(streamed, [0, 1, 2], model)
    assert min(a, key=a.get) == min(b, key=b.get) == 1  # the only chunk whose fakes are bright


def test_clips_of_unequal_length_are_counted_from_shards_json(tmp_path):
    from factories import track_meta

    root = tmp_path / "cache"
    root.mkdir()
    (root / "index.jsonl").touch()
    box, crop_box = [106, 66, 118, 78], [100, 60, 124, 84]
    lm = [[109, 69], [115, 69], [112, 72], [110, 75], [114, 75]]
    for i, n in enumerate((7, 8)):  # 7 frames: clips of 4 and 3 (the index counts do not divide)
        meta = track_meta(n, clip_len=4, box=box, crop_box=crop_box, landmarks=lm, video_id=f"v{i}", dataset="x")
        crops = [np.full((24, 24, 3), 10 * p, np.uint8) for p in range(n)]
        cache_video(root, meta, crops, label=i, split="train")
    pack_cache(root, tmp_path / "s", MIN_SHARD_SIZE)
    shards = ShardSet(tmp_path / "s")
    rows = _sorted_rows(shards.rows())
    view = lambda entry, pos: {"x": torch.tensor([float(entry.crop(p)[0, 0, 0]) for p in pos])}  # noqa: E731
    folder = dataset_for("clip")(root, rows, view, clip_len=2)
    base = dataset_for("clip")(shards.base, rows, view, clip_len=2, open_entry=shards.layout)
    assert len(base) == len(folder) == 3 + 4  # 2 + 1 windows of 2 in the short video, 4 in the other
    streamed = sorted((m["index"], x["x"].tolist()) for x, _, m in ShardStreamDataset(base, shards, mode="all"))
    assert streamed == [(i, folder[i][0]["x"].tolist()) for i in range(len(folder))]


def test_the_cache_group_still_merges(cache, tmp_path, capsys):
    assert main(["cache", "merge", str(tmp_path / "merged"), str(cache)]) == 0
    assert "18 entries (18 copied" in " ".join(capsys.readouterr().out.split())
    assert len(FaceTrackCache(tmp_path / "merged").rows()) == 18


@pytest.mark.slow
def test_ddp_two_processes_stream_uneven_shards_without_hanging(tmp_path):
    """The real CM specialist, tiny preset, 2 CPU processes with gloo, from shards that do not divide
    evenly between the ranks (train 12 + 12 + 8 samples, val 4 + 12): both ranks run the same batches."""
    cache = cache_on_disk(tmp_path / "cache", counts={"train": (4, 4), "val": (2, 2)})
    from dfpanel.extract.shards import _archive_bytes, _video

    video = max(_video(cache, r).nbytes for r in FaceTrackCache(cache).rows())
    pack_cache(cache, tmp_path / "shards", _archive_bytes(3 * video))  # 3 videos a shard, the 3rd 2 train + 1 val
    shards = ShardSet(tmp_path / "shards")
    assert [[r.split for r in shards.rows() if shards.shard_of(r) == i] for i in range(4)] == [
        ["train"] * 3, ["train"] * 3, ["train", "train", "val"], ["val"] * 3]
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "dfpanel", "train", "--config", "cm/tiny_ffpp", "--data", str(tmp_path / "shards"),
           "--out", str(out), "--devices", "2", "--quiet", "--set", "trainer.accelerator=cpu",
           "trainer.max_epochs=1", "data.batch_size=4"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["world_size"] == 2 and result["global_step"] == 4  # 8 videos x 4 frames / batch 4 / 2 ranks
