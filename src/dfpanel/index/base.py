"""The adapter interface every dataset layout implements, the registry, and layout detection.

An adapter knows one dataset's folder tree and metadata files. It answers two questions:
`looks_like(root)` (cheap: are the tell-tale folders there?) and `index(root, options)` (read the
dataset's own files and return one `VideoRecord` per video). Everything common to all layouts
(audio probing, the synth sidecar, id uniqueness) happens once in `dfpanel.index.indexer`.
"""

from __future__ import annotations

import json
import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from dfpanel.errors import DataError
from dfpanel.index.manifest import VideoRecord

log = logging.getLogger("dfpanel.index")

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})


@dataclass(frozen=True)
class IndexOptions:
    compression: str = "c23"  # FF++ quality folder: raw, c23 or c40
    dfdc_chunks: int = 10  # DFDC parts are grouped into this many chunks
    probe_audio: bool | None = None  # None: each layout's default
    # Warnings an adapter also wants in the `dfpanel index` summary (it logs them too); filled in place.
    notes: list[str] = field(default_factory=list, compare=False)


class Layout(ABC):
    """One dataset layout. Subclasses set `name`, `markers` and implement the two methods."""

    name: str = ""
    # Human-readable list of what a root of this layout holds; used in "not found" messages.
    markers: str = ""
    # Whether `has_audio` is probed with PyAV when the user does not say (--probe-audio).
    probe_audio_by_default: bool = False

    @abstractmethod
    def looks_like(self, root: Path) -> bool:
        """True when root holds this layout's tell-tale folders/files (no deep checks)."""

    @abstractmethod
    def index(self, root: Path, options: IndexOptions) -> list[VideoRecord]:
        """Records for every video the dataset's own files list and that exists on disk."""

    def require(self, path: Path, what: str = "") -> Path:
        """Fail with one line naming the missing file/folder when `path` does not exist."""
        if not path.exists():
            hint = f" ({what})" if what else ""
            raise DataError(f"{path}: not found{hint}; a {self.name} dataset folder holds {self.markers}")
        return path


LAYOUTS: dict[str, Layout] = {}


def register(layout_cls: type[Layout]) -> type[Layout]:
    """Class decorator adding a layout to the registry under its `name`."""
    LAYOUTS[layout_cls.name] = layout_cls()
    return layout_cls


# Names people also use for these datasets on the command line.
ALIASES = {"ff++": "ffpp", "faceforensics": "ffpp", "faceforensics++": "ffpp", "celeb-df": "celebdf",
           "celeb-df-v2": "celebdf", "celebdfv2": "celebdf", "fakeav": "fakeavceleb", "dir": "folder"}


def get_layout(name: str) -> Layout:
    key = name.strip().lower()
    try:
        return LAYOUTS[ALIASES.get(key, key)]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(LAYOUTS)}") from None


def detect_layout(root: str | os.PathLike) -> str:
    """The name of the layout `root` holds; DataError naming every layout tried when none fits."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found; give the folder that holds the dataset")
    for name, layout in LAYOUTS.items():
        if layout.looks_like(root):
            return name
    tried = "; ".join(f"{name} (needs {layout.markers})" for name, layout in LAYOUTS.items())
    nested = [f"{sub.name}/ looks like {name}" for sub in _subdirs(root) for name, lay in LAYOUTS.items()
              if lay.looks_like(sub)]
    hint = f"; did you mean a sub-folder? {', '.join(nested[:3])}" if nested else "; or pass --dataset"
    raise DataError(f"{root}: no known dataset layout found; tried {tried}{hint}")


def _subdirs(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


# --- helpers shared by the adapters -------------------------------------------------------------


def load_json(path: Path):
    """Parse a JSON file; malformed JSON names the file and line."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); restore the dataset's original file") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file; restore the dataset's original file") from None


def files_in(folder: Path) -> set[str]:
    """Names of the plain files directly in `folder` (one directory read instead of a stat per video)."""
    try:
        with os.scandir(folder) as it:
            return {e.name for e in it if e.is_file()}
    except OSError:
        return set()


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


def stem(name: str) -> str:
    """File name without folder and extension; os.path, because Path() costs ~10x more per call."""
    return os.path.splitext(os.path.basename(name))[0]


def rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


class MissingVideos:
    """Counts videos a dataset's files list but the disk lacks; warns once, naming the first few."""

    SHOW = 3

    def __init__(self, dataset: str):
        self.dataset = dataset
        self.paths: list[str] = []
        self._seen: set[str] = set()

    def add(self, relpath: str) -> None:
        if relpath not in self._seen:  # a file may be listed twice (FakeAVCeleb)
            self._seen.add(relpath)
            self.paths.append(relpath)

    def __len__(self) -> int:
        return len(self.paths)

    def warn(self) -> None:
        if not self.paths:
            return
        first = ", ".join(self.paths[: self.SHOW])
        more = ", ..." if len(self.paths) > self.SHOW else ""
        log.warning(
            "%s: %d video(s) listed in the dataset's files are missing on disk and were skipped (%s%s)",
            self.dataset, len(self.paths), first, more,
        )
