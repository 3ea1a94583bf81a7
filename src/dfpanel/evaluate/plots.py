"""ROC plot: one curve per test set (or specialist x test set), its EER point marked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dfpanel.evaluate.metrics import eer_from_roc, roc_points


def plot_roc(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], path: Path, title: str = "ROC") -> Path:
    """curves = [(label, probs, labels)]. A curve with one class only is listed in the legend as
    undefined instead of drawn. Writes a PNG with matplotlib's Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from sklearn.metrics import auc as area

    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    try:
        ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
        ax.plot([0, 1], [1, 0], ls="--", color="lightgrey", lw=1, label="EER line (FPR = FNR)")
        for label, probs, labels in curves:
            labels = np.asarray(labels)
            if len(np.unique(labels)) < 2:
                ax.plot([], [], ls="none", label=f"{label}: one class only, ROC undefined")
                continue
            fpr, tpr, thr = roc_points(probs, labels)
            eer, _ = eer_from_roc(fpr, tpr, thr)
            (line,) = ax.plot(fpr, tpr, lw=1.6, label=f"{label} (AUC {area(fpr, tpr):.3f}, EER {eer:.3f})")
            ax.plot([eer], [1 - eer], "o", color=line.get_color(), ms=6, mec="black")
        ax.set(xlim=(-0.01, 1), ylim=(0, 1.01),  # a margin keeps curves on the axes visible
               xlabel="False positive rate (real called fake)",
               ylabel="True positive rate (fake caught)", title=title)  # fmt: skip
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=7)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
