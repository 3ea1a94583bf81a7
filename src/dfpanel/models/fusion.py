"""Multi-head attention fusion of a backbone map and a specialist map, and the real/fake heads.

Both maps (C x 7 x 7) become 49 d-dim tokens with learned position embeddings. Then:
  1. cross-attention: each specialist token attends to the backbone tokens (what does the general
     face model see where this specialist looks?), plus a feed-forward step;
  2. class attention: a learned class token attends to the fused specialist tokens (CaiT-style), so
     the head reads the specialist's evidence as read against the backbone, not the backbone alone.
The main logit comes from the class token; the auxiliary logit from the specialist tokens alone (before
fusion), so training can make the specialist module carry signal by itself.
"""

from __future__ import annotations

import torch
from torch import nn

from dfpanel.models.backbone import GRID


class _FeedForward(nn.Sequential):
    def __init__(self, dim: int, dropout: float):
        super().__init__(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))


class AttentionFusion(nn.Module):
    def __init__(self, backbone_channels: int, specialist_channels: int, dim: int = 256, heads: int = 8, dropout: float = 0.2, grid: int = GRID):
        super().__init__()
        if dim % heads:
            raise ValueError(f"fusion_dim {dim} must be a multiple of fusion_heads {heads}")
        n = grid * grid
        self.backbone_proj = nn.Conv2d(backbone_channels, dim, 1)
        self.specialist_proj = nn.Conv2d(specialist_channels, dim, 1)
        self.backbone_pos = nn.Parameter(torch.zeros(1, n, dim))
        self.specialist_pos = nn.Parameter(torch.zeros(1, n, dim))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        for p in (self.backbone_pos, self.specialist_pos, self.cls_token):
            nn.init.trunc_normal_(p, std=0.02)
        self.norm_query = nn.LayerNorm(dim)
        self.norm_memory = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_ff = _FeedForward(dim, dropout)
        self.norm_cls = nn.LayerNorm(dim)
        self.norm_tokens = nn.LayerNorm(dim)
        self.class_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.class_ff = _FeedForward(dim, dropout)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Dropout(dropout), nn.Linear(dim, 1))
        self.aux_head = nn.Sequential(nn.LayerNorm(dim), nn.Dropout(dropout), nn.Linear(dim, 1))

    @staticmethod
    def _tokens(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, H*W, C)

    def forward(self, backbone_map: torch.Tensor, specialist_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (logit (B,), aux_logit (B,))."""
        memory = self.norm_memory(self._tokens(self.backbone_proj(backbone_map)) + self.backbone_pos)
        spec = self._tokens(self.specialist_proj(specialist_map)) + self.specialist_pos
        aux_logit = self.aux_head(spec.mean(dim=1)).squeeze(-1)

        spec = spec + self.cross_attn(self.norm_query(spec), memory, memory, need_weights=False)[0]
        spec = spec + self.cross_ff(spec)

        cls = self.cls_token.expand(spec.shape[0], -1, -1)
        keys = self.norm_tokens(torch.cat([cls, spec], dim=1))
        cls = cls + self.class_attn(self.norm_cls(cls), keys, keys, need_weights=False)[0]
        cls = cls + self.class_ff(cls)
        return self.head(cls[:, 0]).squeeze(-1), aux_logit
