"""Session fixtures for the reliability catalogue: the inputs of reliability_inputs.BUILDERS built
once, two good talking-face videos, and a folder of tiny random-init real specialists."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_inputs import BUILDERS, GOOD_SPEC
from video_factory import VideoSpec, make_video


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory) -> dict[str, Path]:
    """Every catalogue input, built once per session in one folder (name -> path)."""
    d = tmp_path_factory.mktemp("catalogue_inputs")
    make_video(d / "_good.mp4", GOOD_SPEC)
    return {name: build(d) for name, build in BUILDERS.items()}


@pytest.fixture(scope="session")
def good_videos(tmp_path_factory) -> list[Path]:
    """Two good talking-face videos (a face MTCNN finds; one with a voice track)."""
    d = tmp_path_factory.mktemp("good_videos")
    return [make_video(d / "talking.mp4", GOOD_SPEC),
            make_video(d / "talking2.mp4", VideoSpec(seconds=1.2, size=(320, 240), click_at=0.4, seed=11))]


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """Tiny random-init real specialists (CM frame-level, AV clip-level with audio) as a weights folder."""
    import torch

    from dfpanel.models.specialists.base import create_specialist
    from dfpanel.weights.io import save_weights

    root = tmp_path_factory.mktemp("catalogue_weights")
    torch.manual_seed(0)
    for name in ("av", "cm"):
        model = create_specialist(name, backbone="tiny", image_size=64, clip_len=4).eval()
        save_weights(model, root / name, {"stage": "catalogue"})
    return root
