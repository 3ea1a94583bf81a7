"""A ready PanelDetector from a weights folder: the specialists, the panel, checks that they agree.

Used by `dfpanel detect`, `dfpanel serve` and anything else that analyses videos from weights on disk.
"""

from __future__ import annotations

import os
from pathlib import Path

from dfpanel.console import err_console
from dfpanel.errors import ConfigError, DfpanelError
from dfpanel.extract.spec import DEFAULT_SPEC, MAX_FRAMES


def resolve_weights(weights: Path | None) -> Path:
    if weights is None:
        env = os.environ.get("DFPANEL_WEIGHTS")
        if not env:
            raise DfpanelError("no weights given; pass --weights DIR (a folder of <specialist>.safetensors + .json) or set DFPANEL_WEIGHTS")
        weights = Path(env)
    return weights


def check_device(device: str) -> None:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA GPU is visible to torch; use --device cpu")


def check_frames(frames: int) -> None:
    """A user's --frames: a positive count, at most MAX_FRAMES (each one is decoded and analysed)."""
    if not 1 <= frames <= MAX_FRAMES:
        raise ConfigError(f"--frames must be between 1 and {MAX_FRAMES}, got {frames}")


def frames_per_video(frames: int | None, panel, runners) -> int:
    """THE place detection's frames per video is decided: the user's --frames; else what panel.json
    was fitted on (videos are scored as the panel saw them); else the most any specialist's weights
    were trained with (their input specs). Frames per video is sampling density (how many views, not
    what a view holds), so one value serves every specialist, and specialists whose specs differ only
    in it share one extraction."""
    if frames is not None:
        check_frames(frames)
        return int(frames)
    if panel.frames_per_video:
        return int(panel.frames_per_video)
    return max((r.input_spec.frames for r in runners), default=DEFAULT_SPEC.frames)


def build_detector(weights: Path, *, frames: int | None = None, device: str, backend: str, margin: float | None = None,
                   only: list[str] | None = None, batch_size: int = 32):
    """Load the specialists and panel in a folder into a PanelDetector that extracts videos with the
    input specs of those weights (frames per video: see frames_per_video)."""
    # model code is imported here, not at the top: `dfpanel serve`'s web process checks its options
    # with this module's light functions and never loads a model
    from dfpanel.detect.pipeline import DetectConfig, PanelDetector
    from dfpanel.inference.runners import load_runners
    from dfpanel.panel.combiner import load_panel

    if frames is not None:  # before loading any model: a bad --frames fails fast
        check_frames(frames)
    check_device(device)
    panel = load_panel(weights, margin=margin)
    runners = load_runners(weights, backend=backend, device=device, only=only)
    stale = panel_mismatch(panel, runners)
    if stale:
        err_console.print(f"[yellow]warning:[/] {weights}/panel.json was fitted on other weights for "
                          f"{', '.join(stale)}; re-run `dfpanel panel fit` for a calibrated verdict", highlight=False)
    cfg = DetectConfig(frames=frames_per_video(frames, panel, runners), device=device, backend=backend, batch_size=batch_size)
    return PanelDetector(runners, panel, cfg)


def panel_mismatch(panel, runners) -> list[str]:
    """Specialists whose weights differ from those the panel was fitted on."""
    if not panel.fitted or not panel.weights_ids:
        return []
    return [r.name.upper() for r in runners
            if r.name in panel.weights_ids and r.weights_id and panel.weights_ids[r.name] != r.weights_id]
