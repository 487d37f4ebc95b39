"""Cross-attention fusion of ID representations with text representations."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CrossAttentionFusion(nn.Module):
    """Multi-head cross-attention from queries (e.g. a candidate item's ID + text vector) over keys
    (e.g. the text vectors of the user's history items), returning the attention weights too.

    A learned "null" key is always present, so a query can attend to nothing and a user without
    history still gets a defined result. Attending over a single pooled vector would make the
    weights identically 1 (a mere projection); here there is one key per history item.

    Args:
        dim: width of queries, keys and the output.
        num_heads: attention heads (``dim`` must be divisible by it).
        dropout: dropout on the attention weights.

    Example:
        >>> fusion = CrossAttentionFusion(dim=8, num_heads=2)
        >>> queries, keys = torch.randn(2, 3, 8), torch.randn(2, 4, 8)
        >>> mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
        >>> fused, weights = fusion(queries, keys, mask)
        >>> fused.shape, weights.shape, bool(weights[0, :, 2:].eq(0).all())
        (torch.Size([2, 3, 8]), torch.Size([2, 3, 4]), True)
    """

    def __init__(self, dim: int, num_heads: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.output = nn.Linear(dim, dim)
        self.null_key = nn.Parameter(torch.zeros(1, 1, dim))
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: Tensor) -> Tensor:
        return x.view(*x.shape[:2], self.num_heads, self.head_dim).transpose(1, 2)  # [B, heads, N, head_dim]

    def forward(self, queries: Tensor, keys: Tensor, key_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Args: queries ``[B, C, dim]``, keys ``[B, H, dim]``, key_mask ``[B, H]`` (True = real key).

        Returns:
            ``(fused [B, C, dim], weights [B, C, H])``: weights averaged over heads; the share that
            went to the null key is ``1 - weights.sum(-1)``.
        """
        keys = torch.cat([self.null_key.expand(len(keys), -1, -1), keys], dim=1)
        mask = torch.cat([key_mask.new_ones(len(keys), 1), key_mask], dim=1)
        q, k, v = self._heads(self.query(queries)), self._heads(self.key(keys)), self._heads(self.value(keys))
        logits = q @ k.transpose(-1, -2) / self.head_dim**0.5  # [B, heads, C, 1 + H]
        weights = logits.masked_fill(~mask[:, None, None, :], float("-inf")).softmax(-1)
        fused = (self.dropout(weights) @ v).transpose(1, 2).reshape(queries.shape)
        return self.output(fused), weights.mean(1)[..., 1:]
