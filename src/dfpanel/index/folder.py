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

from dfpanel.index.base import IndexOptions, Layout, is_video, log, register, rel
from dfpanel.index.manifest import FAKE, REAL, VideoRecord, safe_id
from dfpanel.index.sidecar import read_sidecar
from dfpanel.index.splits import assign_splits

FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}


@register
class FolderLayout(Layout):
    name = "folder"
    markers = "a real/ sub-folder holding videos (and fake/, unless it is real videos alone)"
    probe_audio_by_default = True  # nothing else says whether a video has sound

    def looks_like(self, root: Path) -> bool:
        # real/ alone is a valid folder: real videos to train from with pseudo-fakes (pseudofakes.mode: only).
        return (root / "real").is_dir()

    def index(self, root: Path, options: IndexOptions) -> list[VideoRecord]:
        self.require(root / "real")
        tops = ("real", "fake") if (root / "fake").is_dir() else ("real",)
        if tops == ("real",):
            note = "no fake/ folder: real videos only (train them with pseudo-fakes: a */real_only preset)"
            log.info("folder: %s", note)
            options.notes.append(note)
        bases = {top: root / top for top in tops}
        found, outside = walk_videos(root, list(bases.values()))
        if outside:
            first = ", ".join(outside[:3]) + (", ..." if len(outside) > 3 else "")
            note = (f"followed {len(outside)} symlink(s) that leave {root} ({first}); "
                    "their videos are indexed under the link's path")
            log.warning("folder: %s", note)
            options.notes.append(note)
        records: list[VideoRecord] = []
        for top, label in (("real", REAL), ("fake", FAKE)):
            for path in found.get(bases.get(top), []):
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


def walk_videos(root: Path, bases: list[Path]) -> tuple[dict[Path, list[Path]], list[str]]:
    """The videos below each base, each real file and folder visited once: -> ({base: paths}, links
    that leave root as "link -> target").

    The plain tree (no links followed) comes first, so a file is labelled by the folder it really sits
    in: with `real/shared -> ../fake` the fakes stay fake, and `real/self -> .` adds nothing. Folder
    links are then followed once each; a link to a folder already visited (a loop included) is
    skipped, as is a file whose real path was already indexed.
    """
    real_root = os.path.realpath(root)
    seen_dirs: set[str] = set()
    seen_files: set[str] = set()
    found: dict[Path, list[Path]] = {b: [] for b in bases}
    links: list[tuple[Path, Path]] = []  # (base, symlink path) in walk order
    outside: list[str] = []

    def walk(base: Path, top: Path) -> None:
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            real_dir = os.path.realpath(dirpath)
            if real_dir in seen_dirs:
                dirnames[:] = []
                continue
            seen_dirs.add(real_dir)
            keep = []
            for d in sorted(d for d in dirnames if not d.startswith(".")):
                (links.append((base, Path(dirpath) / d)) if os.path.islink(os.path.join(dirpath, d)) else keep.append(d))
            dirnames[:] = keep
            for f in sorted(filenames):
                path = Path(dirpath) / f
                if not is_video(path):
                    continue
                if os.path.islink(path):
                    links.append((base, path))
                    continue
                real = os.path.realpath(path)
                if real not in seen_files:
                    seen_files.add(real)
                    found[base].append(path)

    def leaves_root(path: Path) -> str:
        target = os.path.realpath(path)
        if os.path.commonpath([real_root, target]) != real_root:
            outside.append(f"{rel(path, root)} -> {target}")
        return target

    for base in bases:  # a top folder that is itself a link (real/ -> /mnt/real) is walked as is
        if os.path.islink(base):
            leaves_root(base)
        walk(base, base)
    i = 0
    while i < len(links):  # links found while following links join the end of the queue
        base, link = links[i]
        i += 1
        if not link.exists():
            continue  # a dangling link
        target = leaves_root(link)
        if link.is_dir():
            if target not in seen_dirs:
                walk(base, link)
        elif target not in seen_files:
            seen_files.add(target)
            found[base].append(link)
    return found, outside
