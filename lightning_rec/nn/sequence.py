"""The Transformer over item sequences shared by SASRec (causal) and BERT4Rec (bidirectional)."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: ``pre_norm``: the pre-norm block of BERT and GPT-2 (GELU feed-forward). ``sasrec``: the SASRec authors' block
#: (RecTools' too): attention from the normalised query over the raw keys, residuals on the normalised inputs,
#: ReLU feed-forward.
BlockLayout = Literal["pre_norm", "sasrec"]
#: ``normal``: item and position tables N(0, 0.02), PyTorch's defaults elsewhere. ``xavier``: Xavier-normal for every
#: matrix, as RecTools initialises its transformers.
WeightInit = Literal["normal", "xavier"]

#: Dropout keeps an element when its 15 random bits reach ``p * 2**15``: ``p`` is exact to 3e-5.
_DROPOUT_BITS = 15


def cheap_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Inverted dropout with the mask cut from 64-bit random words, 4 elements per word.

    Same distribution as ``F.dropout`` (``p`` rounded to a multiple of 2**-15) at a fraction of its
    cost on CPU, where drawing one Bernoulli number per element was a quarter of a SASRec step. The
    words come from torch's global generator, so a seed (and a resumed checkpoint) fixes them.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> kept = cheap_dropout(torch.ones(100_000), 0.2)
        >>> round(float((kept == 0).float().mean()), 2), float(kept.max())
        (0.2, 1.25)
    """
    if not training or p == 0:
        return x
    words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64, device=x.device).random_()
    bits = words.view(torch.int16)[: x.numel()].view(x.shape) & (2**_DROPOUT_BITS - 1)
    keep = bits >= round(p * 2**_DROPOUT_BITS)
    return x * keep / (1 - p)


class SequenceBlock(nn.Module):
    """A Transformer encoder block over the real tokens only: pre-norm (GELU feed-forward, ``4 * dim`` wide by
    default) or the SASRec authors' layout (``layout="sasrec"``).

    Every position-wise part (layer norms, projections, feed-forward, dropout) runs on the ``N`` real
    tokens of the batch, ``[N, dim]``; only attention sees the padded ``[B, L]`` layout. Short
    sequences then cost what their tokens need, not ``max_length`` (on Beauty, 7x fewer rows). The
    parameters and their names are ``nn.TransformerEncoderLayer``'s (``norm_first=True``) in both layouts.
    """

    def __init__(
        self, dim: int, num_heads: int, dropout: float, feedforward_dim: int | None = None,
        layout: BlockLayout = "pre_norm",
    ) -> None:  # fmt: skip
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        if layout not in ("pre_norm", "sasrec"):
            raise ValueError(f"block layout must be 'pre_norm' or 'sasrec', got {layout!r}")
        self.self_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)  # holds the projections
        width = feedforward_dim or 4 * dim
        self.linear1, self.linear2 = nn.Linear(dim, width), nn.Linear(width, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.num_heads, self.dropout, self.layout = num_heads, dropout, layout

    def forward(self, tokens: Tensor, token_index: Tensor, shape: tuple[int, int], attention_mask: Tensor) -> Tensor:
        """``tokens`` ``[N, dim]`` are the real positions ``token_index`` of a ``shape`` ``(B, L)`` batch;
        ``attention_mask`` ``[B, heads, L, L]`` is additive."""
        if self.layout == "sasrec":
            query = self.norm1(tokens)
            tokens = query + self._attend(query, tokens, token_index, shape, attention_mask)
            normed = self.norm2(tokens)
            hidden = cheap_dropout(F.relu(self.linear1(normed)), self.dropout, self.training)
            return normed + cheap_dropout(self.linear2(hidden), self.dropout, self.training)
        normed = self.norm1(tokens)
        attended = self._attend(normed, normed, token_index, shape, attention_mask)
        tokens = tokens + cheap_dropout(attended, self.dropout, self.training)
        hidden = cheap_dropout(F.gelu(self.linear1(self.norm2(tokens))), self.dropout, self.training)
        return tokens + cheap_dropout(self.linear2(hidden), self.dropout, self.training)

    def _attend(
        self, queries: Tensor, keys: Tensor, token_index: Tensor, shape: tuple[int, int], attention_mask: Tensor
    ) -> Tensor:
        (batch, length), dim, heads = shape, queries.shape[1], self.num_heads
        weight, bias = self.self_attn.in_proj_weight, self.self_attn.in_proj_bias
        if queries is keys:
            projected = F.linear(queries, weight, bias)
        else:
            # The SASRec layout: queries from the normalised tokens, keys and values from the raw ones.
            query, key_value = F.linear(queries, weight[:dim], bias[:dim]), F.linear(keys, weight[dim:], bias[dim:])
            projected = torch.cat([query, key_value], 1)
        # Padded positions get zero keys and values; the mask keeps every real query off them.
        padded = projected.new_zeros(batch * length, 3 * dim).index_copy(0, token_index, projected)
        q, k, v = padded.view(batch, length, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(dim // heads) + attention_mask
        weights = cheap_dropout(scores.softmax(-1), self.dropout, self.training)
        out = (weights @ v).transpose(1, 2).reshape(batch * length, dim)[token_index]
        return self.self_attn.out_proj(out)


def _rename_old_block_keys(state_dict: dict, prefix: str, *args) -> None:
    # Checkpoints from before the packed blocks held them in an nn.TransformerEncoder (``layers.layers.0``).
    for key in [k for k in state_dict if k.startswith(prefix + "layers.layers.")]:
        state_dict[prefix + "layers." + key.removeprefix(prefix + "layers.layers.")] = state_dict.pop(key)


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
        feedforward_dim: width of each block's feed-forward layer (``None``: ``4 * dim``, as BERT; SASRec's paper
            uses ``dim``).
        sparse: sparse gradients for the item table (steps that look up a few items move only their rows).
        block: the blocks' layout, ``pre_norm`` or the SASRec authors' ``sasrec`` (see :class:`SequenceBlock`).
        init: ``normal`` (every table N(0, 0.02), PyTorch's defaults elsewhere) or ``xavier`` (Xavier-normal for
            every matrix, as RecTools initialises its transformers).

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
        sparse: bool = False,
        feedforward_dim: int | None = None,
        block: BlockLayout = "pre_norm",
        init: WeightInit = "normal",
    ) -> None:
        super().__init__()
        if init not in ("normal", "xavier"):
            raise ValueError(f"init must be 'normal' or 'xavier', got {init!r}")
        self.num_items, self.max_length, self.causal, self.num_heads = num_items, max_length, causal, num_heads
        self.mask_item = num_items
        # Rows: the catalog, [MASK], then padding (its row is never trained).
        self.item_embedding = nn.Embedding(num_items + 2, dim, padding_idx=num_items + 1, sparse=sparse)
        self.position_embedding = nn.Embedding(max_length, dim)
        self.dropout = dropout
        self.layers = nn.ModuleList(
            SequenceBlock(dim, num_heads, dropout, feedforward_dim, block) for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(dim)
        if init == "xavier":
            for parameter in self.parameters():
                if parameter.dim() > 1:
                    nn.init.xavier_normal_(parameter)
        else:
            nn.init.normal_(self.item_embedding.weight, std=0.02)
            nn.init.normal_(self.position_embedding.weight, std=0.02)
        self._register_load_state_dict_pre_hook(_rename_old_block_keys)

    def embed(self, items: Tensor) -> Tensor:
        """``[B, L]`` item indices (``-1`` padding) -> their ID embeddings ``[B, L, dim]``."""
        return self.item_embedding(items.masked_fill(items < 0, self.num_items + 1))

    def forward(self, items: Tensor, item_vectors: Tensor | None = None) -> Tensor:
        """``[B, L]`` item indices (``-1`` padding) -> ``[B, L, dim]`` hidden states.

        ``item_vectors`` ``[B, L, dim]`` replaces the ID embeddings of ``items`` (text-based items);
        padded positions are masked, so their vectors only need to be finite.
        """
        if items.shape[1] > self.max_length:
            items = items[:, -self.max_length :]
            item_vectors = None if item_vectors is None else item_vectors[:, -self.max_length :]
        padding, (batch, length) = items < 0, items.shape
        hidden = self.embed(items) if item_vectors is None else item_vectors
        positions = torch.arange(length, device=items.device) + self.max_length - length
        hidden = hidden + self.position_embedding(positions)
        token_index = (~padding).flatten().nonzero().squeeze(1)
        tokens = cheap_dropout(hidden.reshape(batch * length, -1)[token_index], self.dropout, self.training)
        mask = self._attention_mask(padding)
        for block in self.layers:
            tokens = block(tokens, token_index, (batch, length), mask)
        tokens = self.final_norm(tokens)
        # Padded positions come back as zeros (no caller reads them).
        hidden = tokens.new_zeros(batch * length, tokens.shape[1]).index_copy(0, token_index, tokens)
        return hidden.view(batch, length, -1)

    def _attention_mask(self, padding: Tensor) -> Tensor:
        """``[B, 1, L, L]`` additive mask: no padded keys, no future keys when causal; every position
        may see itself, so padded rows stay finite (a row of only ``-inf`` would be NaN, even in backward)."""
        length = padding.shape[1]
        blocked = padding.unsqueeze(1).expand(-1, length, -1)
        if self.causal:
            blocked = blocked | torch.triu(torch.ones(length, length, dtype=torch.bool, device=padding.device), 1)
        blocked = blocked & ~torch.eye(length, dtype=torch.bool, device=padding.device)
        return torch.zeros(blocked.shape, device=padding.device).masked_fill(blocked, float("-inf")).unsqueeze(1)

    def output_embeddings(self) -> Tensor:
        """``[num_items, dim]``: scores are hidden states times these (tied with the input)."""
        return self.item_embedding.weight[: self.num_items]


def trim_left_padding(items: Tensor) -> Tensor:
    """Drops the leading columns that are padding (``-1``) in every row of ``items`` ``[B, L]``.

    Exact for the encoder: positions are counted from the right and padded keys are masked, so the
    real positions' states do not change; a batch of short sequences then costs what its longest row
    needs instead of ``max_length`` (Beauty's median training sequence has 4 items, the cap is 50).

    Example:
        >>> trim_left_padding(torch.tensor([[-1, -1, 3, 4], [-1, 5, 6, 7]]))
        tensor([[-1,  3,  4],
                [ 5,  6,  7]])
    """
    real = (items >= 0).any(0)
    if not bool(real.any()):
        return items[:, -1:]
    return items[:, int(real.nonzero()[0]) :]
