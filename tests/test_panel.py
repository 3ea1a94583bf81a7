"""The panel combiner: masking abstentions, fitting, thresholds, panel.json."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dfpanel.errors import DataError
from dfpanel.panel.combiner import (
    Panel,
    choose_threshold,
    fit_panel,
    sigmoid,
    video_logit,
)

NAMES = ["bg", "av", "cm", "rr"]


def synthetic_logits(n: int, seed: int):
    """bg informative, av informative but abstains on ~40% (no audio), cm pure noise on a large
    scale (it drowns an equal-weights mean), rr weakly informative."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = 2 * y - 1
    bg = 1.5 * s + rng.normal(0, 1.0, n)
    av = 2.0 * s + rng.normal(0, 1.0, n)
    av[rng.random(n) < 0.4] = np.nan
    cm = rng.normal(0, 6.0, n)
    rr = 0.5 * s + rng.normal(0, 1.0, n)
    return np.stack([bg, av, cm, rr], axis=1), y


def test_unfitted_panel_is_mean_of_voters_and_ignores_abstentions():
    panel = Panel()
    assert panel.decision({"bg": 2.0, "av": None, "cm": -1.0}) == pytest.approx(0.5)
    assert panel.decision({"bg": 2.0, "av": float("nan"), "cm": -1.0}) == pytest.approx(0.5)
    assert panel.probability({"bg": 1.0}) == pytest.approx(float(sigmoid(1.0)))
    assert panel.decision({"av": None}) is None
    assert panel.verdict(None) == "uncertain"


def test_verdict_margin_around_threshold():
    panel = Panel(threshold=0.4, margin=0.1)
    assert panel.verdict(0.55) == "fake"
    assert panel.verdict(0.45) == "uncertain"
    assert panel.verdict(0.31) == "uncertain"
    assert panel.verdict(0.29) == "real"


def test_fitted_panel_drops_the_term_of_an_abstaining_specialist():
    panel = Panel(specialists=["bg", "av"], weights={"bg": 2.0, "av": 3.0}, bias=0.25, fitted=True)
    assert panel.decision({"bg": 1.0, "av": 1.0}) == pytest.approx(0.25 + 2.0 + 3.0)
    # AV abstains: no term at all, whatever value it would have had.
    assert panel.decision({"bg": 1.0, "av": None}) == pytest.approx(0.25 + 2.0)
    assert panel.decision({"bg": 1.0}) == pytest.approx(0.25 + 2.0)
    # A specialist the panel never saw cannot vote.
    assert panel.decision({"bg": 1.0, "av": None, "tm": 50.0}) == pytest.approx(0.25 + 2.0)


def test_abstaining_is_not_learned_as_evidence():
    """Where AV abstains on mostly-fake videos (FF++: no audio), 'no audio' must not become 'fake'."""
    rng = np.random.default_rng(5)
    n = 600
    y = rng.integers(0, 2, n)
    bg = (2 * y - 1) * 1.0 + rng.normal(0, 1.0, n)
    av = (2 * y - 1) * 1.0 + rng.normal(0, 1.0, n)
    av[(y == 1) & (rng.random(n) < 0.8)] = np.nan  # fakes mostly lack audio
    panel = fit_panel(np.stack([bg, av], 1), y, ["bg", "av"])
    assert panel.decision({"bg": 0.0, "av": None}) == pytest.approx(panel.decision({"bg": 0.0, "av": 0.0}))


def test_fit_recovers_informative_weights_and_beats_equal_weights():
    x_train, y_train = synthetic_logits(800, seed=0)
    x_test, y_test = synthetic_logits(800, seed=1)
    panel = fit_panel(x_train, y_train, NAMES)
    w = panel.weights
    # The noise specialist gets (near) nothing, the informative ones clearly positive weights.
    assert abs(w["cm"]) < 0.1
    assert w["bg"] > 0.5 and w["av"] > 0.5 and w["rr"] > 0.1
    assert w["av"] > w["rr"]

    def auc(p: Panel) -> float:
        probs = [p.probability(dict(zip(NAMES, row))) for row in x_test]
        return roc_auc_score(y_test, probs)

    fitted_auc, equal_auc = auc(panel), auc(Panel())
    assert fitted_auc > 0.9
    assert fitted_auc > equal_auc + 0.1
    assert panel.metrics["auc"] > panel.metrics["equal_weights_auc"]
    assert panel.metrics["abstained"]["av"] == int(np.isnan(x_train[:, 1]).sum())


def test_threshold_eer_and_target_fpr():
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(500, int), np.ones(500, int)]
    p = np.r_[rng.beta(2, 5, 500), rng.beta(5, 2, 500)]
    t_eer = choose_threshold(p, y, "eer")
    fpr = (p[y == 0] >= t_eer).mean()
    fnr = (p[y == 1] < t_eer).mean()
    assert abs(fpr - fnr) < 0.02
    t = choose_threshold(p, y, "fpr", target_fpr=0.05)
    assert (p[y == 0] >= t).mean() <= 0.05
    assert (p[y == 0] >= t).mean() > 0.03  # not needlessly strict
    with pytest.raises(DataError):
        choose_threshold(p[:10], np.zeros(10, int))


def test_panel_json_roundtrip_and_bad_file(tmp_path):
    x, y = synthetic_logits(300, seed=2)
    panel = fit_panel(x, y, NAMES, threshold="fpr", target_fpr=0.1, margin=0.05)
    path = panel.save(tmp_path)
    assert path.name == "panel.json"
    back = Panel.load(tmp_path)
    row = dict(zip(NAMES, [0.3, None, 1.0, -0.2]))
    assert back.probability(row) == pytest.approx(panel.probability(row))
    assert back.threshold == panel.threshold and back.margin == 0.05 and back.threshold_method == "fpr"
    assert Panel.load_or_default(tmp_path / "nothing-here").fitted is False
    (tmp_path / "panel.json").write_text(json.dumps({"threshold": 3.0}))
    with pytest.raises(DataError, match="panel.json"):
        Panel.load(tmp_path)


def test_video_logit_aggregations():
    z = [0.0, 2.0, -2.0, 4.0]
    assert video_logit(z, "logit_mean") == pytest.approx(1.0)
    assert video_logit(z, "max") == 4.0
    mean_p = float(np.mean(sigmoid(np.array(z))))
    assert video_logit(z, "mean") == pytest.approx(math.log(mean_p / (1 - mean_p)))
