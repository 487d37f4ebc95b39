"""The Transformer over item sequences shared by SASRec (causal) and BERT4Rec (bidirectional)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ItemSequenceEncoder(nn.Module):
    """Item + learned position embeddings, then a stack of Transformer encoder layers.

    Sequences are ``[B, L]`` item indices, left-padded with ``-1`` (the data module's convention).
    Index ``num_items`` is the ``[MASK]`` item BERT4Rec predicts; ``output_embeddings`` ties the
    output layer to the item embeddings, as both papers do.

    Args:
        num_items: catalog size.
        dim: hidden size.
        max_length: longest sequence (number of position embeddings).
        num_layers: Transformer blocks.
        num_heads: attention heads.
        dropout: dropout on embeddings, attention and feed-forward.
        causal: each position sees only earlier ones (SASRec) or all (BERT4Rec).

    Example:
        >>> encoder = ItemSequenceEncoder(num_items=10, dim=8, max_length=4)
        >>> encoder(torch.tensor([[-1, 3, 4, 5]])).shape
        torch.Size([1, 4, 8])
    """

    def __init__(
        self,
        num_items: int,
        dim: int = 64,
        max_length: int = 50,
        num_layers: int = 2,
        num_heads: int = 1,
        dropout: float = 0.2,
        causal: bool = True,
    ) -> None:
        super().__init__()
        self.num_items, self.max_length, self.causal, self.num_heads = num_items, max_length, causal, num_heads
        self.mask_item = num_items
        # Rows: the catalog, [MASK], then padding (its row is never trained).
        self.item_embedding = nn.Embedding(num_items + 2, dim, padding_idx=num_items + 1)
        self.position_embedding = nn.Embedding(max_length, dim)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            dim, num_heads, dim_feedforward=dim * 4, dropout=dropout, activation="gelu", batch_first=True,
            norm_first=True,
        )  # fmt: skip
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(dim)
        nn.init.normal_(self.item_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.02)

    def forward(self, items: Tensor) -> Tensor:
        """``[B, L]`` item indices (``-1`` padding) -> ``[B, L, dim]`` hidden states."""
        if items.shape[1] > self.max_length:
            items = items[:, -self.max_length :]
        padding = items < 0
        hidden = self.item_embedding(items.masked_fill(padding, self.num_items + 1))
        positions = torch.arange(items.shape[1], device=items.device) + self.max_length - items.shape[1]
        hidden = self.dropout(hidden + self.position_embedding(positions))
        hidden = self.layers(hidden, mask=self._attention_mask(padding))
        return self.final_norm(hidden)

    def _attention_mask(self, padding: Tensor) -> Tensor:
        """``[B * heads, L, L]`` additive mask: no padded keys, no future keys when causal; every
        position may see itself, so padded rows stay finite instead of attending to nothing."""
        length = padding.shape[1]
        blocked = padding.unsqueeze(1).expand(-1, length, -1)
        if self.causal:
            blocked = blocked | torch.triu(torch.ones(length, length, dtype=torch.bool, device=padding.device), 1)
        blocked = blocked & ~torch.eye(length, dtype=torch.bool, device=padding.device)
        mask = torch.zeros(blocked.shape, device=padding.device).masked_fill(blocked, float("-inf"))
        return mask.repeat_interleave(self.num_heads, dim=0)

    def output_embeddings(self) -> Tensor:
        """``[num_items, dim]``: scores are hidden states times these (tied with the input)."""
        return self.item_embedding.weight[: self.num_items]
