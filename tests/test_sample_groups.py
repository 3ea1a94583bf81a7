"""One grouping of samples (`sample_groups`): the cache datasets (training, eval, panel fit) and
detection give a specialist the same samples when the cached clips are longer than, as long as or
shorter than its clip_len; and the datasets count them from the cache index alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from factories import cache_on_disk as make_cache
from train_fakes import FakeClipSpecialist, FakeFrameSpecialist

from dfpanel.detect.pipeline import DetectConfig, PanelDetector
from dfpanel.errors import DataError
from dfpanel.extract.cache import FaceTrackCache, FaceTrackEntry
from dfpanel.inference.runners import SpecialistRunner
from dfpanel.panel.combiner import Panel
from dfpanel.views import samples as samples_mod
from dfpanel.views.samples import (
    sample_count,
    sample_groups,
    select_rows,
    specialist_dataset,
)

L = 4  # the specialist's clip_len


class Recorder(SpecialistRunner):
    """A detection runner that remembers the positions of every sample it was asked to view."""

    def __init__(self, kind: str = "clip", clip_len: int = L):
        super().__init__(name="tm", title="Recorder", sample_kind=kind, clip_len=clip_len, needs_audio=False, weights_id=None)
        self.seen: list[list[int]] = []

    def view(self, entry, positions):
        self.seen.append(list(positions))
        return {"x": torch.tensor([float(positions[0])])}

    def predict(self, batch):
        return np.zeros(len(batch["x"]), dtype=np.float32)


def detection_groups(entry, kind: str = "clip", clip_len: int = L) -> tuple[list[list[int]], dict]:
    rec = Recorder(kind, clip_len)
    det = PanelDetector([rec], Panel(), DetectConfig(clip_len=clip_len, batch_size=3), extract=lambda *a, **kw: [])
    out = det._score(rec, entry, {})
    return rec.seen, out


def dataset_groups(root, rows, model) -> dict[str, list[list[int]]]:
    ds = specialist_dataset(model, root, rows)
    seen: dict[str, list[list[int]]] = {r.id: [] for r in rows}

    def view(entry, positions):
        seen[entry.meta.video_id].append(list(positions))
        return model.view(entry, positions)

    ds.view = view
    for i in range(len(ds)):
        ds[i]
    return seen


# cached clip length -> the windows of 4 a video of two such clips gives
CASES = {
    12: [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15], [16, 17, 18, 19], [20, 21, 22, 23]],
    8: [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]],  # longer: consecutive windows
    6: [[0, 1, 2, 3], [6, 7, 8, 9]],  # a tail shorter than clip_len is left out
    4: [[0, 1, 2, 3], [4, 5, 6, 7]],  # equal: the cached clips themselves
    3: [],  # shorter: no sample (never a padded clip)
}


@pytest.mark.parametrize("cache_clip", sorted(CASES))
def test_datasets_and_detection_group_samples_alike(tmp_path, cache_clip):
    from dfpanel.inference.scores import predict_scores

    root = make_cache(tmp_path / "cache", counts={"val": (1, 1)}, n_frames=2 * cache_clip, clip_len=cache_clip)
    rows = select_rows(FaceTrackCache(root).rows())
    model = FakeClipSpecialist(clip_len=L)
    from_dataset = dataset_groups(root, rows, model)
    for row in rows:
        entry = FaceTrackEntry(root / row.dir)
        from_detection, out = detection_groups(entry)
        assert from_dataset[row.id] == from_detection == sample_groups(entry, "clip", L) == CASES[cache_clip]
        assert sample_count(row, "clip", L) == len(CASES[cache_clip])
        if CASES[cache_clip]:
            assert out["status"] == "scored" and len(out["samples"]) == len(CASES[cache_clip])
        else:
            assert out["status"] == "abstained" and f"no {L} consecutive frames" in out["reason"]
    # eval and panel fit score exactly these samples, first frame = the window's start
    df = predict_scores(model, root, progress=False, batch_size=3)
    for row in rows:
        assert df[df.video_id == row.id]["position"].tolist() == [g[0] for g in CASES[cache_clip]]


def test_frame_samples_are_every_frame_for_both(tmp_path):
    root = make_cache(tmp_path / "cache", counts={"val": (1, 1)}, n_frames=6, clip_len=3)
    rows = select_rows(FaceTrackCache(root).rows())
    from_dataset = dataset_groups(root, rows, FakeFrameSpecialist())
    for row in rows:
        entry = FaceTrackEntry(root / row.dir)
        assert from_dataset[row.id] == detection_groups(entry, "frame")[0] == [[p] for p in range(6)]


def test_building_a_dataset_reads_no_per_video_metadata(tmp_path, monkeypatch):
    root = make_cache(tmp_path / "cache", counts={"train": (3, 3)}, n_frames=16, clip_len=8)
    rows = select_rows(FaceTrackCache(root).rows())

    def no_reads(*args, **kwargs):
        raise AssertionError("a per-video meta.json was read while building the dataset")

    monkeypatch.setattr(samples_mod, "FaceTrackEntry", no_reads)
    ds = specialist_dataset(FakeClipSpecialist(clip_len=L), root, rows, per_video=3)
    assert len(ds) == 6 * 3 and [k for v, k in ds.items if v == 0] == [0, 2, 3]  # 4 windows, 3 spaced ones
    assert len(specialist_dataset(FakeClipSpecialist(clip_len=L), root, rows)) == 6 * 4


def test_clips_of_unequal_length_are_counted_from_their_metadata(tmp_path):
    """Not what `dfpanel extract` writes (a video's clips share one length), but a hand-made cache
    must still give the samples detection would: its count then costs a meta.json read."""
    root = make_cache(tmp_path / "cache", counts={"val": (1, 1)}, n_frames=10, clip_len=4)  # clips of 4, 4, 2
    index = root / "index.jsonl"
    lines = [json.loads(x) for x in index.read_text().splitlines() if x.strip()]
    index.write_text("".join(json.dumps(dict(d, n_clips=3)) + "\n" for d in lines))
    rows = select_rows(FaceTrackCache(root).rows())
    model = FakeClipSpecialist(clip_len=L)
    from_dataset = dataset_groups(root, rows, model)
    for row in rows:
        entry = FaceTrackEntry(root / row.dir)
        assert from_dataset[row.id] == detection_groups(entry)[0] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_an_index_that_promises_more_samples_than_the_entry_holds_is_a_data_error(tmp_path):
    root = make_cache(tmp_path / "cache", counts={"val": (1, 0)}, n_frames=8, clip_len=4)
    index = root / "index.jsonl"
    d = json.loads(index.read_text().splitlines()[0])
    index.write_text(json.dumps(dict(d, n_frames=16, n_clips=4)) + "\n")
    ds = specialist_dataset(FakeClipSpecialist(clip_len=L), root, FaceTrackCache(root).rows())
    assert len(ds) == 4
    with pytest.raises(DataError, match="re-extract"):
        ds[3]


def test_sample_groups_takes_a_meta_and_rejects_unknown_kinds(tmp_path):
    root = make_cache(tmp_path / "cache", counts={"val": (1, 0)}, n_frames=8, clip_len=8)
    entry = FaceTrackEntry(root / FaceTrackCache(root).rows()[0].dir)
    assert sample_groups(entry.meta, "clip", 4) == sample_groups(entry, "clip", 4) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert sample_groups(entry, "clip") == [list(range(8))]  # no clip_len: the cached clips whole
    with pytest.raises(ValueError, match="sample_kind"):
        sample_groups(entry, "video", 4)
    with pytest.raises(ValueError, match="clip_len"):
        sample_groups(entry, "clip", 0)
