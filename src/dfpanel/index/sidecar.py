"""`dfpanel_synth.json`: what `dfpanel synth` knows about the videos it wrote.

Format (written next to the dataset, at ROOT)::

    {"videos": {"<relpath>": {"label": 1, "fake_type": "...", "manipulations": ["blend", ...],
                              "identity": "id3", "source_identity": "id5", "has_audio": true}}}

Its `manipulations` and `has_audio` are copied into the rows, and every row it lists is marked
`synthetic` (rows it does not list, e.g. a real video dropped into the folder, are not). It never changes a row's label,
split or fake type: those always come from the dataset's own files. The `folder` layout, which has
no identity information of its own, reads `identity` as the group before splitting (folder.py).
"""

from __future__ import annotations

from pathlib import Path

from dfpanel.errors import DataError
from dfpanel.index.base import load_json, log
from dfpanel.index.manifest import VideoRecord

SIDECAR = "dfpanel_synth.json"


def read_sidecar(root: Path) -> dict[str, dict] | None:
    path = root / SIDECAR
    if not path.is_file():
        return None
    data = load_json(path)
    videos = data.get("videos") if isinstance(data, dict) else None
    if not isinstance(videos, dict):
        raise DataError(f"{path}: expected {{\"videos\": {{relpath: facts}}}}; re-run `dfpanel synth` or delete the file")
    return {str(k).replace("\\", "/"): v for k, v in videos.items() if isinstance(v, dict)}


def apply_sidecar(records: list[VideoRecord], videos: dict[str, dict] | None) -> None:
    """Copy the sidecar's facts into the rows; every row learns whether `dfpanel synth` made it."""
    disagree = 0
    for r in records:
        facts = (videos or {}).get(r.path)
        r.synthetic = facts is not None
        if facts is None:
            continue
        manipulations = facts.get("manipulations")
        if isinstance(manipulations, list):
            r.manipulations = [str(m) for m in manipulations]
        if isinstance(facts.get("has_audio"), bool):
            r.has_audio = facts["has_audio"]
        if "label" in facts and _as_int(facts["label"]) not in (None, r.label):
            disagree += 1
    if disagree:
        log.warning("%s: %d video(s) labelled differently from the dataset's files; kept the dataset's labels",
                    SIDECAR, disagree)


def _as_int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
