"""Feed-forward towers over (user, item) pairs."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class PairTower(nn.Module):
    """ReLU MLP over the concatenation ``[user; item]`` for ``B`` users and ``C`` items each.

    The first layer is applied to each side apart (``W [u; i] = W_u u + W_i i``), which is the same
    function but never materialises ``B x C`` concatenated inputs and computes the user side once.

    Example:
        >>> import torch
        >>> tower = PairTower(user_dim=8, item_dim=8, hidden_dims=[16, 8])
        >>> tower(torch.randn(2, 8), torch.randn(2, 5, 8)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(self, user_dim: int, item_dim: int, hidden_dims: Sequence[int], dropout: float = 0.0) -> None:
        super().__init__()
        if not hidden_dims:
            raise ValueError("PairTower needs at least one hidden layer")
        self.user_in = nn.Linear(user_dim, hidden_dims[0])
        self.item_in = nn.Linear(item_dim, hidden_dims[0], bias=False)
        layers: list[nn.Module] = [nn.ReLU(), nn.Dropout(dropout)]
        for d_in, d_out in zip(hidden_dims[:-1], hidden_dims[1:]):
            layers += [nn.Linear(d_in, d_out), nn.ReLU(), nn.Dropout(dropout)]
        self.rest = nn.Sequential(*layers)
        self.output_dim = hidden_dims[-1]

    def forward(self, user: Tensor, item: Tensor) -> Tensor:
        return self.rest(self.user_in(user).unsqueeze(1) + self.item_in(item))


def history_mean(item_vectors: Tensor, history: Tensor) -> Tensor:
    """Mean of ``item_vectors`` ``[num_items, D]`` over each row of ``history`` ``[B, H]`` (``-1`` is
    padding); a user with an empty history gets the zero vector. Returns ``[B, D]``."""
    valid = (history >= 0).unsqueeze(-1).to(item_vectors.dtype)
    summed = (item_vectors[history.clamp(min=0)] * valid).sum(1)
    return summed / valid.sum(1).clamp(min=1)


def dot_scores(user_vectors: Tensor, item_vectors: Tensor, items: Tensor) -> Tensor:
    """``<u_b, v_i>`` for each user row ``[B, D]`` and its candidate ``items`` ``[B, C]``, rows of
    ``item_vectors`` ``[num_items, D]``: the scoring of every two-tower model. Returns ``[B, C]``."""
    return (user_vectors.unsqueeze(1) * item_vectors[items]).sum(-1)
