"""Batched scoring of samples: the one loop that runs views through a model, for the cache (evaluation,
panel fit) and for one video in memory (detection).

    for logits, batch in predict_batches(samples, predict, batch_size=32): ...

`samples` is a map-style Dataset whose items are a view dict (`specialist.view(entry, positions)`) or
a tuple starting with one (the cache datasets' `(inputs, label, meta)`); `predict` takes a batched
view dict (torch tensors, CPU) and returns (B,) logits: `torch_predict(model)` or an ONNX runner's.

Gates (`PanelSpecialist.build_gate`: why a sample holds no evidence, e.g. AV's "no speech in the clip")
are evaluated by `sample_gates` for detection (`GroupViews` groups) and by the cache datasets
themselves (`views.samples.CacheSampleDataset.sample_meta`, meta["gate"]) for evaluation and panel fit;
`inference.aggregate.video_logits(..., gates=)` then leaves gated samples out (the one rule, `evidence_mask`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

PredictFn = Callable[[dict], np.ndarray]  # batched view dict -> (B,) logits


def torch_predict(model, device: str = "cpu") -> PredictFn:
    """A torch model as a PredictFn: inputs moved to `device`, inference mode, float32 logits back.
    The caller puts the model in eval mode on `device`."""

    def predict(batch: dict) -> np.ndarray:
        with torch.inference_mode():
            out = model({k: v.to(device, non_blocking=True) for k, v in batch.items()})
        return out.logit.detach().float().cpu().numpy().reshape(-1)

    return predict


GateFn = Callable[[object, Sequence[int]], "str | None"]  # (entry, positions) -> reason | None


def gate_of(model) -> GateFn | None:
    """A model's (or runner's) picklable gate function, None when it has none (never gated)."""
    if hasattr(model, "gate_fn"):
        return model.gate_fn()
    return getattr(model, "gate", None)


def sample_gates(gate: GateFn | None, entry, groups: Sequence[Sequence[int]]) -> list[str | None]:
    """THE per-sample gate evaluation: for each sample (frame positions) of `entry`, why it holds no
    evidence, or None. `gate` None: nothing is gated."""
    if gate is None:
        return [None] * len(groups)
    return [gate(entry, list(g)) or None for g in groups]


class GroupViews(Dataset):
    """The samples of one in-memory entry: item i is `view(entry, groups[i])` (detection's samples)."""

    def __init__(self, entry, groups: Sequence[Sequence[int]], view: Callable):
        self.entry, self.groups, self.view = entry, list(groups), view

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> dict:
        return self.view(self.entry, self.groups[i])


def predict_batches(
    samples: Dataset,
    predict: PredictFn,
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    timings: dict | None = None,
) -> Iterator[tuple[np.ndarray, object]]:
    """Every sample, in order, through `predict` in batches of `batch_size`; yields `(logits, batch)`
    per batch (`batch` as collated: the view dict, or the item tuple's fields batched).

    With `timings`, adds the seconds spent making and collating views to "views" and in `predict` to
    "models" (views are made in the workers when num_workers > 0; "views" is then the wait for them).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    loader = DataLoader(samples, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    batches = iter(loader)
    while True:
        t = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            return
        t_model = time.perf_counter()
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        logits = np.asarray(predict(inputs), dtype=np.float32).reshape(-1)
        if timings is not None:
            timings["views"] = timings.get("views", 0.0) + t_model - t
            timings["models"] = timings.get("models", 0.0) + time.perf_counter() - t_model
        n = len(next(iter(inputs.values()))) if isinstance(inputs, dict) and inputs else len(logits)
        if len(logits) != n:
            raise ValueError(f"predict returned {len(logits)} logits for a batch of {n} samples")
        yield logits, batch
