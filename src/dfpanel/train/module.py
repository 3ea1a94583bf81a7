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
        mask_weight: float = 0.0,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model if model is not None else create_specialist(specialist, **(model_kwargs or {}))
        self.optim_cfg = OptimConfig(**(optim or {}))
        self.pos_weight = float(pos_weight)
        self.mask_weight = float(mask_weight)
        self.val_metric = VideoAUROC()
        self.carried_optimizer_state: dict | None = None  # curriculum `carry_optimizer: true`

    def forward(self, inputs: dict[str, torch.Tensor]):
        return self.model(inputs)

    def loss(self, out, labels: torch.Tensor, meta: dict | None = None) -> torch.Tensor:
        """Weighted BCE: a sample whose `weight` is 0 (gated: AV on a clip without speech) adds nothing.
        With a mask head and known masks (pseudo-fakes and reals), + mask_weight x the mask BCE."""
        pw = torch.tensor(self.pos_weight, device=labels.device, dtype=torch.float32)
        meta = meta or {}
        weight = meta.get("weight")
        weight = torch.ones_like(labels, dtype=torch.float32) if weight is None else weight.to(labels.device).float()
        denom = weight.sum().clamp_min(1.0)

        def bce(logit):
            per = F.binary_cross_entropy_with_logits(logit.float(), labels.float(), pos_weight=pw, reduction="none")
            return (per * weight).sum() / denom

        total = bce(out.logit)
        if self.optim_cfg.aux_weight and out.aux_logit is not None:
            total = total + self.optim_cfg.aux_weight * bce(out.aux_logit)
        if self.mask_weight and out.mask_logit is not None and "mask" in meta:
            known = meta["mask_weight"].to(labels.device).float() * weight
            if known.sum() > 0:
                target = meta["mask"].to(out.mask_logit.device).float()
                per = F.binary_cross_entropy_with_logits(out.mask_logit.float(), target, reduction="none").mean(dim=(1, 2, 3))
                total = total + self.mask_weight * (per * known).sum() / known.sum()
        return total

    def training_step(self, batch, batch_idx):
        inputs, labels, meta = batch
        out = self.model(inputs)
        loss = self.loss(out, labels, meta) + self.tuning_penalty()
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
        loss = self.loss(out, labels, meta)
        self.log("val_loss", loss, sync_dist=True, batch_size=labels.shape[0])
        keep = meta["weight"] > 0 if "weight" in meta else torch.ones_like(labels, dtype=torch.bool)
        if keep.any():  # gated samples hold no evidence: they do not enter the video score
            self.val_metric.update(out.logit.float()[keep], labels[keep], meta["video"][keep])

    def on_validation_epoch_end(self) -> None:
        import warnings

        with warnings.catch_warnings():
            # Every val sample gated (AV on a stage without audio, e.g. FF++): no update, AUC NaN, which
            # the run reports as undefined; torchmetrics' "compute before update" warning adds nothing.
            warnings.filterwarnings("ignore", message=".*was called before the ``update`` method.*")
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

