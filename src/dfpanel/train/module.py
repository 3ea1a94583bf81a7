"""The LightningModule that trains any specialist.

Loss: BCE-with-logits on the fused logit plus `aux_weight` x BCE on the auxiliary logit (specialist
tokens alone), both with the same `pos_weight` (class weight of fakes, from the train split); in
training, plus `svd_orth_weight` x the SVD-residual orthogonality loss (tuning svd_residual only).
AdamW with no weight decay on biases and norms; per-step cosine (with linear warm-up) or one-cycle.
Monitor: `val_auc`, AUC of video-level scores (`dfpanel.inference.aggregate`: mean of probabilities).
"""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from dfpanel.models.specialists.base import create_specialist
from dfpanel.models.svd_residual import svd_regularization
from dfpanel.train.config import OptimConfig
from dfpanel.train.metrics import VideoAUROC


class SpecialistModule(L.LightningModule):
    def __init__(
        self,
        specialist: str,
        model_kwargs: dict | None = None,
        optim: dict | None = None,
        pos_weight: float = 1.0,
        model: nn.Module | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model if model is not None else create_specialist(specialist, **(model_kwargs or {}))
        self.optim_cfg = OptimConfig(**(optim or {}))
        self.pos_weight = float(pos_weight)
        self.val_metric = VideoAUROC()
        self.carried_optimizer_state: dict | None = None  # curriculum `carry_optimizer: true`

    def forward(self, inputs: dict[str, torch.Tensor]):
        return self.model(inputs)

    def loss(self, out, labels: torch.Tensor) -> torch.Tensor:
        pw = torch.tensor(self.pos_weight, device=labels.device, dtype=torch.float32)
        main = F.binary_cross_entropy_with_logits(out.logit.float(), labels.float(), pos_weight=pw)
        if self.optim_cfg.aux_weight and out.aux_logit is not None:
            aux = F.binary_cross_entropy_with_logits(out.aux_logit.float(), labels.float(), pos_weight=pw)
            return main + self.optim_cfg.aux_weight * aux
        return main

    def training_step(self, batch, batch_idx):
        inputs, labels, _ = batch
        out = self.model(inputs)
        loss = self.loss(out, labels) + self.tuning_penalty()
        self.log("train_loss", loss, prog_bar=True, batch_size=labels.shape[0])
        return loss

    def tuning_penalty(self) -> torch.Tensor | float:
        """`svd_orth_weight` x the SVD-residual layers' orthogonality loss (0 when off or none)."""
        weight = self.optim_cfg.svd_orth_weight
        reg = svd_regularization(self.model) if weight else None
        return 0.0 if reg is None else weight * reg.float()

    def validation_step(self, batch, batch_idx):
        inputs, labels, meta = batch
        out = self.model(inputs)
        loss = self.loss(out, labels)
        self.log("val_loss", loss, sync_dist=True, batch_size=labels.shape[0])
        self.val_metric.update(out.logit.float(), labels, meta["video"])

    def on_validation_epoch_end(self) -> None:
        result = self.val_metric.compute()  # gathered across ranks by torchmetrics
        self.log("val_auc", result["video_auc"], prog_bar=True)
        self.log("val_frame_auc", result["frame_auc"])
        self.val_metric.reset()

    def on_train_start(self) -> None:
        if self.carried_optimizer_state is not None:
            # Moments carry over; this stage's own learning rate and schedule stay.
            optimizer = self.trainer.optimizers[0]
            keep = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
            optimizer.load_state_dict(self.carried_optimizer_state)
            for group, own in zip(optimizer.param_groups, keep):
                group.update(own)
            self.carried_optimizer_state = None

    def configure_optimizers(self):
        cfg = self.optim_cfg
        decay, no_decay = [], []
        for p in self.model.parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
            betas=tuple(cfg.betas),
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if cfg.schedule == "onecycle":
            pct = min(0.5, max(cfg.warmup_steps / total, 0.05))
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total, pct_start=pct)
        else:
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(cfg, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class WarmupCosine:
    # A picklable callable rather than a closure: LambdaLR state goes into checkpoints.
    """Linear warm-up, then cosine down to `min_lr_ratio` (or flat for `constant`)."""

    def __init__(self, cfg: OptimConfig, total: int):
        self.warmup = cfg.warmup_steps
        self.total = total
        self.floor = cfg.min_lr_ratio
        self.cosine = cfg.schedule == "cosine"

    def __call__(self, step: int) -> float:
        if self.warmup and step < self.warmup:
            return (step + 1) / self.warmup
        if not self.cosine:
            return 1.0
        span = max(1, self.total - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))

