"""Validation monitor: AUC of video-level scores, aggregated by the one rule evaluation, the panel fit
and detection use (`dfpanel.inference.aggregate.video_logits`, mean of probabilities by default).

A torchmetrics Metric with "cat" states, so under DDP every rank's samples are gathered before the
videos are scored; the frame-level AUC comes out of the same states for free.

AUC with one class only is NaN (`auroc`), as everywhere else. A validation split without both classes
(small Celeb-DF or synthetic splits can be all real) trains with a warning, no early stopping and the
last epoch's weights; the best-weights callback never prefers a NaN over a real score.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from dfpanel.inference.aggregate import auroc, check_how, video_logits

NAN = float("nan")


class VideoAUROC(Metric):
    """update(sample logits, labels, video ids) per batch; compute() -> {"video_auc", "frame_auc"}."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, how: str = "mean", **kwargs):
        super().__init__(**kwargs)
        self.how = check_how(how)
        self.add_state("logits", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")
        self.add_state("videos", default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, labels: torch.Tensor, videos: torch.Tensor) -> None:
        self.logits.append(logits.detach().float().flatten())
        self.labels.append(labels.detach().float().flatten())
        self.videos.append(videos.detach().long().flatten())

    def _samples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        if isinstance(self.logits, list) and not self.logits:  # nothing seen (after a DDP sync: tensors)
            return None
        return (dim_zero_cat(self.logits).double().cpu().numpy(), dim_zero_cat(self.labels).cpu().numpy(),
                dim_zero_cat(self.videos).cpu().numpy())

    def video_scores(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(video ids, video logits, video labels), sorted by video id: what `video_auc` ranks."""
        seen = self._samples()
        if seen is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
        logits, labels, videos = seen
        ids, first = np.unique(videos, return_index=True)  # sorted, as video_logits orders its result
        return ids, video_logits(logits, videos, self.how), labels[first]  # a video's samples share its label

    def compute(self) -> dict[str, torch.Tensor]:
        seen = self._samples()
        if seen is None:
            return {"video_auc": torch.tensor(NAN), "frame_auc": torch.tensor(NAN)}
        _, z, video_labels = self.video_scores()
        return {"video_auc": torch.tensor(auroc(z, video_labels)), "frame_auc": torch.tensor(auroc(seen[0], seen[1]))}
