"""A plain folder of videos sorted into real/ and fake/ (any depth below them).

    ROOT/real/clip.mp4
    ROOT/real/person7/clip.mp4
    ROOT/fake/clip.mp4                    fake_type "fake"
    ROOT/fake/Deepfakes/clip.mp4          fake_type "Deepfakes" (the first sub-folder under fake/)
    ROOT/fake/Deepfakes/person7/clip.mp4  fake_type "Deepfakes", group "person7"

The group (what keeps splits disjoint) is the folder holding the video when there is one below the
label (and fake type) level, e.g. a person's folder, shared by real/ and fake/; otherwise the video
itself. A `dfpanel synth` sidecar's identity, when present, takes over (see `sidecar.py`). Splits
are 70/15/15 by group, from a hash of the group's name.
"""

from __future__ import annotations

import os
from pathlib import Path

from dfpanel.index.base import IndexOptions, Layout, is_video, register, rel
from dfpanel.index.manifest import FAKE, REAL, VideoRecord, safe_id
from dfpanel.index.sidecar import read_sidecar
from dfpanel.index.splits import assign_splits

FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}


@register
class FolderLayout(Layout):
    name = "folder"
    markers = "real/ and fake/ sub-folders holding videos"
    probe_audio_by_default = True  # nothing else says whether a video has sound

    def looks_like(self, root: Path) -> bool:
        return (root / "real").is_dir() and (root / "fake").is_dir()

    def index(self, root: Path, options: IndexOptions) -> list[VideoRecord]:
        records: list[VideoRecord] = []
        for top, label in (("real", REAL), ("fake", FAKE)):
            base = self.require(root / top)
            for path in _walk_videos(base):
                records.append(self._record(root, path, top, label))
        # A synth sidecar knows who is in each video; group by that before splitting.
        identities = {p: str(f["identity"]) for p, f in (read_sidecar(root) or {}).items() if f.get("identity")}
        for r in records:
            r.group = identities.get(r.path, r.group)
        assign_splits(records, FRACTIONS, salt="folder")
        return records

    def _record(self, root: Path, path: Path, top: str, label: int) -> VideoRecord:
        relpath = rel(path, root)
        inner = relpath.split("/")[1:]  # below real/ or fake/
        fake_type = "real"
        if label == FAKE:
            fake_type = inner[0] if len(inner) > 1 else "fake"
            inner = inner[1:] if len(inner) > 1 else inner
        group = inner[-2] if len(inner) > 1 else relpath
        return VideoRecord(
            id=safe_id("folder", os.path.splitext(relpath)[0]), path=relpath, label=label, fake_type=fake_type,
            split="train", dataset=self.name, group=group,
        )


def _walk_videos(base: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in sorted(filenames) if is_video(Path(f))]
    return found
