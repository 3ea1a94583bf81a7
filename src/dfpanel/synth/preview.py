"""One frame of a real video and of a fake made from it, saved as PNGs (for docs and a quick look)."""

from __future__ import annotations

from pathlib import Path


def middle_frame(path: str | Path):
    """The middle frame of a video as an RGB array."""
    import av

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return frames[len(frames) // 2]


def save_preview(root: str | Path, sidecar: dict, real_png: str | Path, fake_png: str | Path,
                 prefer: str = "face_swap") -> tuple[Path, Path]:
    """Save the middle frame of the first real video and of a fake of the same person (one with `prefer` if any)."""
    from PIL import Image

    root = Path(root)
    videos = sidecar["videos"]
    real = next(p for p, e in videos.items() if e["label"] == 0)
    person = videos[real]["identity"]
    fakes = [p for p, e in videos.items() if e["label"] == 1 and e["identity"] == person]
    fakes.sort(key=lambda p: prefer not in videos[p]["manipulations"])
    out = []
    for src, dst in ((real, real_png), (fakes[0] if fakes else real, fake_png)):
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(middle_frame(root / src)).save(dst)
        out.append(Path(dst))
    return out[0], out[1]
