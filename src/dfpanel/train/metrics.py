"""Validation monitor: AUC of video-level scores (mean sample probability per video).

A torchmetrics Metric with "cat" states, so under DDP every rank's samples are gathered before the
videos are scored; the frame-level AUC comes out of the same states for free.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_auroc
from torchmetrics.utilities import dim_zero_cat


def _auc(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if labels.numel() == 0 or labels.min() == labels.max():
        return torch.tensor(0.5)  # undefined with one class: report chance, not a crash
    return binary_auroc(scores.float(), labels.long())


class VideoAUROC(Metric):
    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("probs", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")
        self.add_state("videos", default=[], dist_reduce_fx="cat")

    def update(self, probs: torch.Tensor, labels: torch.Tensor, videos: torch.Tensor) -> None:
        self.probs.append(probs.detach().float().flatten())
        self.labels.append(labels.detach().float().flatten())
        self.videos.append(videos.detach().long().flatten())

    def compute(self) -> dict[str, torch.Tensor]:
        if isinstance(self.probs, list) and not self.probs:  # nothing seen (after a DDP sync: tensors)
            return {"video_auc": torch.tensor(0.5), "frame_auc": torch.tensor(0.5)}
        probs, labels, videos = dim_zero_cat(self.probs), dim_zero_cat(self.labels), dim_zero_cat(self.videos)
        _, inverse = torch.unique(videos, return_inverse=True)
        n = int(inverse.max()) + 1
        sums = torch.zeros(n, device=probs.device).scatter_add_(0, inverse, probs)
        counts = torch.zeros(n, device=probs.device).scatter_add_(0, inverse, torch.ones_like(probs))
        video_labels = torch.zeros(n, device=probs.device).scatter_reduce_(0, inverse, labels, reduce="amax")
        return {"video_auc": _auc(sums / counts, video_labels), "frame_auc": _auc(probs, labels)}
