"""The manifest: one JSON line per video, written by `dfpanel index`, read by every later step.

A row says where a video is and what it is. Paths are relative to `root` (the dataset folder given
to `index`), which every row also carries as an absolute path, so a manifest can be read from
anywhere and a moved dataset needs only `root` rewritten.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from dfpanel.errors import DataError
from dfpanel.hashing import file_sha256

SPLITS = ("train", "val", "test")
REAL, FAKE = 0, 1
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass
class VideoRecord:
    id: str  # unique in the manifest, filesystem-safe ([A-Za-z0-9_.-]); the cache folder's name
    path: str  # relative to root, with forward slashes
    label: int  # 0 real, 1 fake
    fake_type: str  # "real" for real videos, else the manipulation (e.g. "Deepfakes", "FakeVideo-FakeAudio")
    split: str  # train / val / test
    dataset: str  # ffpp / celebdf / dfdc / fakeavceleb / folder
    group: str  # identity or original video; splits never share a group
    has_audio: bool | None = None  # None when the dataset does not say and it was not probed
    chunk: int | None = None  # DFDC chunk (0-based); None elsewhere
    root: str = ""  # absolute dataset root
    manipulations: list[str] = field(default_factory=list)  # traces a fake carries, when known (synth sidecar)
    # True: written by `dfpanel synth` (listed in the dataset's dfpanel_synth.json); False: `dfpanel index`
    # found no such record of it; None: not stated (a manifest written before dfpanel recorded this).
    synthetic: bool | None = None
    extra: dict = field(default_factory=dict)  # dataset-specific facts (e.g. DFDC "original", FF++ compression)

    @property
    def abspath(self) -> Path:
        return Path(self.root) / self.path

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict) -> "VideoRecord":
        known = {f.name for f in fields(cls)}
        missing = [k for k in ("id", "path", "label", "split", "dataset") if k not in d]
        if missing:
            raise ValueError(f"missing field(s) {', '.join(missing)}")
        kwargs = {k: v for k, v in d.items() if k in known}
        kwargs.setdefault("fake_type", "real" if int(d["label"]) == REAL else "fake")
        kwargs.setdefault("group", d["id"])
        rec = cls(**kwargs)
        rec.label = int(rec.label)
        if rec.synthetic is not None and not isinstance(rec.synthetic, bool):
            raise ValueError(f"synthetic must be true, false or null, got {rec.synthetic!r}")
        if rec.label not in (REAL, FAKE):
            raise ValueError(f"label must be 0 or 1, got {rec.label}")
        if rec.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {rec.split!r}")
        return rec


def safe_id(*parts: str) -> str:
    """Join parts into a filesystem-safe id (used as a cache folder name)."""
    raw = "__".join(p.strip("/") for p in parts if p)
    return re.sub(r"[^A-Za-z0-9_.\-]+", "-", raw).strip("-.") or "video"


def check_manifest_out(path: str | os.PathLike) -> Path:
    """Refuse, in one line, a manifest path that cannot be written: a folder, a path under a file, a
    folder without write permission. Called before indexing, so no time is spent on a doomed run."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: --out is a folder; give the manifest's file name, e.g. {path / 'manifest.jsonl'}")
    if path.exists() and not path.is_file():
        # a device, FIFO or socket: the atomic rename would replace it (as root, /dev/full became a file)
        raise DataError(f"{path}: --out is not a regular file (a device or pipe); give the manifest's file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # the nearest folder that exists: write_manifest creates the rest
    if not parent.is_dir():
        raise DataError(f"{path}: cannot create the manifest, {parent} is a file; give --out a path in a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"{path}: cannot write the manifest, {parent} is not writable; give --out a path you can write")
    return path


def write_manifest(records: Iterable[VideoRecord], path: str | os.PathLike) -> int:
    """Write records atomically; refuses duplicate ids. Returns the number written. On any failure
    the temp file is removed and the old manifest, if any, is left as it was."""
    path = check_manifest_out(path)
    tmp = path.with_name(path.name + ".tmp")
    seen: set[str] = set()
    n = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            for rec in records:
                if rec.id in seen:
                    raise DataError(f"{path}: duplicate video id {rec.id!r}; ids must be unique in a manifest")
                seen.add(rec.id)
                fh.write(rec.to_json() + "\n")
                n += 1
        os.replace(tmp, path)
    except OSError as exc:
        raise DataError(f"{path}: cannot write the manifest ({exc.strerror or exc}); give --out a writable file path") from None
    finally:
        if tmp.exists() and not tmp.is_dir():
            tmp.unlink(missing_ok=True)
    return n


def iter_manifest(path: str | os.PathLike) -> Iterator[VideoRecord]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found; create one with `dfpanel index DATASET_ROOT --out {path}`")
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield VideoRecord.from_dict(json.loads(line))
            except (json.JSONDecodeError, ValueError, TypeError) as exc:
                raise DataError(f"{path}:{lineno}: not a manifest row ({exc})") from None


def read_manifest(path: str | os.PathLike, split: str | None = None) -> list[VideoRecord]:
    rows = list(iter_manifest(path))
    if split is not None:
        rows = [r for r in rows if r.split == split]
    return rows


def manifest_hash(path: str | os.PathLike) -> str:
    """sha256 of the manifest file, recorded in weight sidecars to say what data trained them."""
    return file_sha256(path)


def summarize(records: Iterable[VideoRecord]) -> dict[str, Counter]:
    """Counts per split, per (split, label) and per (split, fake_type), for the terminal summary."""
    out: dict[str, Counter] = {"split": Counter(), "label": Counter(), "fake_type": Counter()}
    for r in records:
        out["split"][r.split] += 1
        out["label"][(r.split, "fake" if r.label else "real")] += 1
        out["fake_type"][(r.split, r.fake_type)] += 1
    return out
