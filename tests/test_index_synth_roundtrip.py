"""`dfpanel synth` output of every layout indexes back to the labels, splits and fake types it was made with."""

from __future__ import annotations

from collections import defaultdict

import pytest

from dfpanel.index import detect_layout, index_dataset
from dfpanel.synth import synthesize

# videos per layout: about the fewest that give fakes and more than one split
SIZES = {"ffpp": 4, "celebdf": 6, "dfdc": 2, "fakeavceleb": 3, "folder": 4}
OFFICIAL_SPLITS = {"ffpp", "celebdf"}  # the others have none: index draws its own, by group
OFFICIAL_TEST = {"ffpp", "celebdf", "dfdc"}  # DFDC: the public test set, test/labels.csv
FAKE_TYPE_FROM_TREE = {"ffpp", "celebdf", "fakeavceleb"}  # DFDC and folder trees do not say the method


@pytest.fixture(scope="module", params=sorted(SIZES))
def synth_set(request, tmp_path_factory):
    layout = request.param
    root = tmp_path_factory.mktemp("synth") / layout
    sidecar = synthesize(layout, root, videos=SIZES[layout], seconds=0.4, size=(128, 120), fps=10, parts=2,
                         progress=False)
    return layout, root, sidecar["videos"]


def test_synth_round_trip(synth_set):
    layout, root, truth = synth_set
    assert detect_layout(root) == layout
    recs = index_dataset(root)
    rows = {r.path: r for r in recs}
    assert set(rows) == set(truth)
    for path, facts in truth.items():
        r = rows[path]
        assert r.dataset == layout
        assert r.label == facts["label"], path
        assert r.manipulations == facts["manipulations"], path
        assert r.has_audio == facts["has_audio"], path
        if r.label == 0:
            assert r.fake_type == "real"
        elif layout in FAKE_TYPE_FROM_TREE:
            assert r.fake_type == facts["fake_type"], path
        if layout in OFFICIAL_SPLITS or layout == "dfdc":
            # val is carved out of the official train split (Celeb-DF, DFDC have none)
            assert r.split == facts["split"] or (facts["split"], r.split) == ("train", "val"), path
    if layout != "ffpp":  # ffpp's 2 pairs fill train and test only
        assert {"train", "val"} <= {r.split for r in recs}
    if layout in OFFICIAL_TEST:  # the dataset's own test videos, with their labels, and nothing else
        test = {path for path, facts in truth.items() if facts["split"] == "test"}
        assert test and {r.path for r in recs if r.split == "test"} == test
        assert {rows[path].label for path in test} == {0, 1}
    if layout == "dfdc":  # test_videos defaults to videos: as many real (and fake) test videos
        assert sorted(rows[path].label for path in test) == [0] * SIZES["dfdc"] + [1] * SIZES["dfdc"]

    if layout not in OFFICIAL_SPLITS:
        splits_of = defaultdict(set)
        for r in recs:
            splits_of[r.group].add(r.split)
        assert all(len(s) == 1 for s in splits_of.values())
