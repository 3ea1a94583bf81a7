"""Per-specialist facts live on the specialist class (needs_audio, colour, plain-language sentence,
augmentation rules) and everything reads them from the registry; CM's augmentation guard."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from detect_fakes import FakeSpecialist

from dfpanel.errors import ConfigError
from dfpanel.inference.runners import TorchRunner
from dfpanel.models.specialists.base import (
    Specialist,
    find_specialist,
    register_specialist,
    specialist_class,
)
from dfpanel.panel.fit import video_logit_table
from dfpanel.report.explain import looks_for
from dfpanel.report.html import _color
from dfpanel.train.config import list_presets, load_stage_config

BUILTIN = ("bg", "av", "cm", "rr", "tm")


@register_specialist
class ThirdParty(Specialist):
    """A specialist from outside dfpanel that sets only what it must."""

    name = "xparty"

    def __init__(self, **_):
        super().__init__()
        self.lin = torch.nn.Linear(1, 1)


def test_the_builtin_specialists_carry_their_facts():
    classes = {n: specialist_class(n) for n in BUILTIN}
    assert [n for n, c in classes.items() if c.needs_audio] == ["av"]
    colours = [c.color for c in classes.values()]
    assert all(c and c.startswith("#") for c in colours) and len(set(colours)) == 5
    assert all(c.looks_for and c.looks_for != Specialist.looks_for for c in classes.values())
    assert "compression history" in looks_for("cm") and _color({"name": "cm"}, 0) == classes["cm"].color
    assert TorchRunner(FakeSpecialist("av", "clip", needs_audio=True)).needs_audio
    # a report carries each specialist's colour, so rendering it needs no model code
    coloured = FakeSpecialist("cm", "frame")
    coloured.color = "#2ca02c"
    assert TorchRunner(coloured).color == "#2ca02c" and TorchRunner(FakeSpecialist("x", "frame")).color is None
    assert _color({"name": "cm", "color": "#123456"}, 0) == "#123456"


def test_a_third_party_specialist_gets_sensible_defaults(tmp_path):
    assert find_specialist("xparty") is ThirdParty and find_specialist("nobody") is None
    assert not ThirdParty.needs_audio and ThirdParty.color is None
    assert looks_for("xparty") == looks_for("nobody") == Specialist.looks_for
    assert _color({"name": "xparty"}, 1) != _color({"name": "xparty", "color": None}, 2)  # one from the spare palette, by position
    assert ThirdParty.augment_refusal({"name": "HorizontalFlip"}, {"allow_resample": False}) is None
    spec = ThirdParty()
    spec.title, spec.sample_kind = "", "frame"
    assert TorchRunner(spec).needs_audio is False  # no guess from the name


def test_panel_fit_masks_by_the_class_not_the_name():
    import pandas as pd

    rows = [{"dataset": "d", "video_id": v, "label": y, "logit": 1.0, "prob": 0.7310585786300049} for v, y in (("a", 0), ("b", 1))]
    df = pd.DataFrame(rows)
    table = video_logit_table({"av": df, "xparty": df}, {("d", "a"): False, ("d", "b"): True})
    assert table["av"].isna().tolist() == [True, False] and not table["xparty"].isna().any()


# ---- CM's augmentation guard ---------------------------------------------------------------------------


def write_cm_preset(tmp_path: Path, transform: str, **args) -> Path:
    extra = "".join(f", {k}: {v}" for k, v in args.items())
    path = tmp_path / "cm_aug.yaml"
    path.write_text(f"defaults: cm/tiny_ffpp\naugment:\n  transforms:\n    - {{name: {transform}{extra}, p: 0.5}}\n")
    return path


@pytest.mark.parametrize("transform, args, why", [
    ("HorizontalFlip", {}, "moves the 8x8 block grid"),
    ("VerticalFlip", {}, "moves the 8x8 block grid"),
    ("RandomRotate90", {}, "moves the 8x8 block grid"),
    ("RandomCrop", {"height": 32, "width": 32}, "moves the 8x8 block grid"),
    ("Crop", {"x_min": 3, "y_min": 0, "x_max": 40, "y_max": 40}, "moves the 8x8 block grid"),
    ("Pad", {"padding": 4}, "moves the 8x8 block grid"),
    ("Affine", {"translate_px": 3}, "resamples or recompresses"),
    ("ShiftScaleRotate", {}, "resamples or recompresses"),
    ("RandomBrightnessContrast", {}, "changes luma after decoding"),
    ("RandomGamma", {}, "changes luma after decoding"),
    ("ColorJitter", {}, "changes luma after decoding"),
    ("HueSaturationValue", {}, "changes luma after decoding"),
    ("CLAHE", {}, "changes luma after decoding"),
    ("ToGray", {}, "changes luma after decoding"),
    ("Equalize", {}, "changes luma after decoding"),
    ("GaussNoise", {}, "noise, blur, sharpening"),
    ("GaussianBlur", {}, "noise, blur, sharpening"),
    ("CoarseDropout", {}, "no compression history"),
    ("SomeFutureTransform", {}, "not known to keep CM's 8x8 block grid"),
])
def test_cm_refuses_what_moves_its_grid_or_lattice_naming_the_transform(tmp_path, transform, args, why):
    path = write_cm_preset(tmp_path, transform, **args)
    with pytest.raises(ConfigError) as err:
        load_stage_config(path)
    msg = str(err.value)
    assert "cm_aug.yaml" in msg and f"augment.transforms[0] {transform} " in msg and why in msg and "\n" not in msg
    if why != "resamples or recompresses":  # allow_resample lifts resampling only
        with pytest.raises(ConfigError, match=transform):
            load_stage_config(path, ["augment.allow_resample=true"])


@pytest.mark.parametrize("transform, args", [
    ("NoOp", {}),
    ("Crop", {"x_min": 8, "y_min": 16, "x_max": 48, "y_max": 48}),
    ("Pad", {"padding": 8}),
    ("PadIfNeeded", {"min_height": 256, "min_width": 256, "position": "top_left"}),
    ("Affine", {"translate_px": 8}),
])
def test_cm_accepts_what_keeps_the_grid_and_lattice(tmp_path, transform, args):
    assert load_stage_config(write_cm_preset(tmp_path, transform, **args)).augment.transforms[0]["name"] == transform


def test_cm_resampling_still_opts_in_with_allow_resample(tmp_path):
    path = write_cm_preset(tmp_path, "Resize", height=64, width=64)
    with pytest.raises(ConfigError, match="Resize.*allow_resample"):
        load_stage_config(path)
    assert load_stage_config(path, ["augment.allow_resample=true"]).augment.allow_resample


def test_every_shipped_cm_preset_passes_and_other_specialists_keep_their_flips():
    cm = [p for p in list_presets() if p.startswith("cm/")]
    assert len(cm) >= 6
    for name in cm:
        load_stage_config(name)  # no ConfigError
    bg = load_stage_config("bg/ffpp")
    assert "HorizontalFlip" in {t["name"] for t in bg.augment.transforms}
