"""The panel: combines the specialists' video-level logits into one verdict.

A logistic regression over the specialists' logits in which an abstaining specialist (AV on a video
without audio, a specialist whose weights were not given) is *masked*: its term is dropped, so a
missing vote is neither a vote for real nor a made-up score. Deliberately no learned "absent" offset:
it would learn dataset make-up instead of evidence (FF++ has no audio and is mostly fake, so "no
audio" would come to mean "fake"). Until fitted, the panel averages the logits of the specialists
that voted (equal weights) and uses threshold 0.5.

One-sided specialists (class fact `one_sided`, read from the registry: AV) may push the panel towards
fake but never below what the others say: panel logit = max(logit without them, logit with them).
Why: a lip-sync model finds nothing wrong with a face swap that kept the original voice (mouth and
voice still move together), and AV models score near or below chance on such fakes; so "AV finds
nothing" is no evidence of "real", while "the mouth is out of step with the voice" is evidence of
"fake". The rule holds for the fitted panel (the logistic regression is fitted as usual; the max is
applied when combining, in the fit's own threshold choice and metrics too) and for the unfitted
equal-weights mean. "Without them" when only one-sided specialists voted is the panel with no
evidence: the bias of a fitted panel, logit 0 (probability 0.5, its threshold) for the unfitted one.
A one-sided specialist whose pull was cut off has contribution 0. The panel's `metrics["one_sided"]`
and the report's `panel.one_sided` name them.

The verdict is "fake" or "real" when the probability is at least `margin` away from the threshold,
otherwise "uncertain". panel.json (next to the weights) stores weights, threshold and margin.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dfpanel.atomic import atomic_write
from dfpanel.errors import ConfigError, DataError
from dfpanel.inference.aggregate import auroc, check_how, sigmoid, video_logit  # noqa: F401 - the one aggregation
from dfpanel.weights.folder import PANEL_FILE  # the weights folder owns its file names

PANEL_VERSION = 1
DEFAULT_MARGIN = 0.1
VERDICTS = ("real", "fake", "uncertain")
_EPS = 1e-6


@dataclass
class Panel:
    specialists: list[str] = field(default_factory=list)  # order of the combiner's inputs
    weights: dict[str, float] = field(default_factory=dict)  # logit coefficient per specialist
    bias: float = 0.0
    threshold: float = 0.5
    margin: float = DEFAULT_MARGIN
    fitted: bool = False
    threshold_method: str = "default"  # "default" | "eer" | "fpr"
    target_fpr: float | None = None
    aggregate: str = "mean"  # how each specialist's sample logits become its video logit (video_logits)
    # frames sampled per video in the cache the panel was fitted on: detection samples as many by
    # default, so it scores videos the way the panel saw them (None: not recorded, e.g. unfitted)
    frames_per_video: int | None = None
    metrics: dict = field(default_factory=dict)  # validation figures of the fit
    weights_ids: dict[str, str] = field(default_factory=dict)  # specialist -> sha256 it was fitted on
    version: int = PANEL_VERSION

    # ---- combining -------------------------------------------------------------------------------
    @staticmethod
    def one_sided_names(names) -> list[str]:
        """The one-sided specialists among `names` (registry fact; unknown names are not)."""
        return [n for n in names if is_one_sided(n)]

    def _combine(self, voted: Mapping[str, float]) -> float:
        """The panel logit of these votes, no one-sided rule; no votes: the panel without evidence."""
        if not self.fitted:
            return float(np.mean(list(voted.values()))) if voted else 0.0
        # Abstainers add nothing; a specialist the panel was not fitted with has no weight: it is
        # shown in the report but cannot vote.
        return float(self.bias + sum(self.weights.get(n, 0.0) * z for n, z in voted.items()))

    def _votes(self, logits: Mapping[str, float | None]) -> tuple[dict[str, float], float | None, bool]:
        """(votes, panel logit, whether the one-sided rule cut the one-sided specialists' pull off)."""
        voted = {k: float(v) for k, v in logits.items() if v is not None and not math.isnan(float(v))}
        if not voted:
            return voted, None, False
        with_all = self._combine(voted)
        sided = self.one_sided_names(voted)
        if not sided:
            return voted, with_all, False
        without = self._combine({n: z for n, z in voted.items() if n not in sided})
        return voted, max(with_all, without), without > with_all

    def decision(self, logits: Mapping[str, float | None]) -> float | None:
        """Panel logit from specialist logits; None/NaN/missing = abstained. None when all abstain.
        One-sided specialists only ever raise it (module docstring)."""
        return self._votes(logits)[1]

    def probability(self, logits: Mapping[str, float | None]) -> float | None:
        z = self.decision(logits)
        return None if z is None else float(sigmoid(z))

    def verdict(self, prob: float | None) -> str:
        if prob is None or abs(prob - self.threshold) < self.margin:
            return "uncertain"
        return "fake" if prob > self.threshold else "real"

    def contributions(self, logits: Mapping[str, float | None]) -> dict[str, float]:
        """How much each voting specialist pushed the panel logit (positive = towards fake); a
        one-sided specialist whose pull towards real the panel ignored pushed 0."""
        voted, _, cut = self._votes(logits)
        out = {}
        for name, v in voted.items():
            if cut and is_one_sided(name):
                out[name] = 0.0
            elif not self.fitted:
                out[name] = float(v)
            elif name in self.weights:
                out[name] = float(self.weights[name] * v)
        return out

    # ---- files -----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "panel.json") -> "Panel":
        try:
            panel = cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
        except TypeError as exc:
            raise DataError(f"{source}: not a dfpanel panel file ({exc}); re-run `dfpanel panel fit`") from None
        if not 0.0 <= panel.threshold <= 1.0 or not 0.0 <= panel.margin < 0.5:
            raise DataError(f"{source}: threshold must be in [0, 1] and margin in [0, 0.5); fix it or re-run `dfpanel panel fit`")
        if panel.frames_per_video is not None and (not isinstance(panel.frames_per_video, int) or panel.frames_per_video < 1):
            raise DataError(f"{source}: frames_per_video must be a positive whole number or null; fix it or re-run `dfpanel panel fit`")
        try:
            check_how(panel.aggregate)
        except ConfigError as exc:
            raise DataError(f"{source}: {exc}; fix it or re-run `dfpanel panel fit`") from None
        return panel

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        if path.is_dir():
            path = path / PANEL_FILE
        atomic_write(path, json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Panel":
        path = Path(path)
        if path.is_dir():
            path = path / PANEL_FILE
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(f"{path}: no panel file; run `dfpanel panel fit` or omit it for equal weights") from None
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: unreadable panel file ({exc}); re-run `dfpanel panel fit`") from None
        return cls.from_dict(d, source=str(path))

    @classmethod
    def load_or_default(cls, folder: str | os.PathLike, margin: float | None = None) -> "Panel":
        """panel.json from the weights folder, or the unfitted equal-weights panel."""
        path = Path(folder) / PANEL_FILE
        panel = cls.load(path) if path.is_file() else cls()
        if margin is not None:
            panel.margin = margin
        return panel


def is_one_sided(name: str) -> bool:
    """Is `name` a one-sided specialist (its registered class's `one_sided`; unknown names are not)?"""
    from dfpanel.models.specialists.base import find_specialist

    return bool(getattr(find_specialist(name), "one_sided", False))


# ---- fitting --------------------------------------------------------------------------------------
def design_matrix(logits: np.ndarray) -> np.ndarray:
    """(N, K) logits with NaN = abstained -> (N, K) features with abstentions masked to 0 (no term)."""
    return np.where(np.isnan(logits), 0.0, logits)


def choose_threshold(probs: np.ndarray, labels: np.ndarray, method: str = "eer", target_fpr: float | None = None) -> float:
    """Threshold on validation probabilities: equal error rate, or the lowest threshold whose
    false-positive rate (reals called fake) stays within target_fpr."""
    from sklearn.metrics import roc_curve

    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=int)
    if len(np.unique(labels)) < 2:
        raise DataError("validation set needs both real and fake videos to choose a threshold")
    fpr, tpr, thr = roc_curve(labels, probs)
    thr = np.clip(thr, 0.0, 1.0)  # sklearn puts inf first
    if method == "eer":
        i = int(np.nanargmin(np.abs(fpr - (1 - tpr))))
        return float(thr[i])
    if method == "fpr":
        if target_fpr is None or not 0.0 < target_fpr < 1.0:
            raise ConfigError("--target-fpr must be between 0 and 1 (e.g. 0.05)")
        ok = np.where(fpr <= target_fpr)[0]
        return float(thr[ok[-1]])
    raise ConfigError(f"unknown threshold method {method!r}; choose eer or fpr")


def fit_panel(
    logits: np.ndarray,
    labels: np.ndarray,
    specialists: Sequence[str],
    *,
    threshold: str = "eer",
    target_fpr: float | None = None,
    margin: float = DEFAULT_MARGIN,
    C: float = 1.0,
    aggregate: str = "mean",
    frames_per_video: int | None = None,
) -> Panel:
    """Fit the combiner on validation videos: `logits` (N, K) video-level logits, NaN where the
    specialist abstained; labels (N,) 0 real / 1 fake."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=int)
    if logits.ndim != 2 or logits.shape[1] != len(specialists) or len(labels) != len(logits):
        raise ValueError(f"logits {logits.shape} do not match {len(specialists)} specialists and {len(labels)} labels")
    if len(np.unique(labels)) < 2:
        raise DataError("validation set needs both real and fake videos to fit the panel")
    x = design_matrix(logits)
    lr = LogisticRegression(C=C, max_iter=1000)
    lr.fit(x, labels)
    coef = lr.coef_[0]
    panel = Panel(
        specialists=list(specialists),
        weights={s: float(coef[i]) for i, s in enumerate(specialists)},
        bias=float(lr.intercept_[0]),
        margin=margin,
        fitted=True,
        threshold_method=threshold,
        target_fpr=target_fpr if threshold == "fpr" else None,
        aggregate=check_how(aggregate),
        frames_per_video=frames_per_video,
    )
    probs = np.array([panel.probability(dict(zip(specialists, row))) for row in logits], dtype=np.float64)
    panel.threshold = choose_threshold(probs, labels, threshold, target_fpr)
    equal = Panel(specialists=list(specialists))
    eq_probs = np.array([equal.probability(dict(zip(specialists, row))) or 0.5 for row in logits])
    panel.metrics = {
        "n_videos": int(len(labels)),
        "n_fake": int(labels.sum()),
        "auc": auroc(probs, labels),
        "log_loss": float(log_loss(labels, np.clip(probs, _EPS, 1 - _EPS))),
        "equal_weights_auc": auroc(eq_probs, labels),
        "equal_weights_log_loss": float(log_loss(labels, np.clip(eq_probs, _EPS, 1 - _EPS))),
        "abstained": {s: int(np.isnan(logits[:, i]).sum()) for i, s in enumerate(specialists)},
        # their "real" is ignored when combining: they only push towards fake (module docstring)
        "one_sided": panel.one_sided_names(specialists),
    }
    return panel


def load_panel(folder: str | os.PathLike, margin: float | None = None) -> Panel:
    """The panel.json in a weights folder, or equal weights when there is none."""
    return Panel.load_or_default(folder, margin=margin)
