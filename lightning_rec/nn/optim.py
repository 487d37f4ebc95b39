"""Adam for dense parameters with lazy Adam for embedding tables that have sparse gradients, as one optimizer."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn


class SparseDenseAdam(torch.optim.Optimizer):
    """``torch.optim.Adam`` for ``dense`` parameters and ``torch.optim.SparseAdam`` for ``sparse`` ones (the
    weights of ``nn.Embedding(..., sparse=True)``), stepped together, so that Lightning's automatic
    optimisation, which steps one optimizer, runs both. SparseAdam is lazy: only the rows a batch looked up
    move, and only their moments decay, so a step costs what the batch touches, not the catalog.

    Example:
        >>> table, head = nn.Embedding(1000, 8, sparse=True), nn.Linear(8, 1)
        >>> optimizer = SparseDenseAdam(head.parameters(), [table.weight], lr=0.1)
        >>> before = table.weight.detach().clone()
        >>> head(table(torch.tensor([3, 7]))).sum().backward()
        >>> optimizer.step()
        >>> sorted(torch.nonzero((table.weight != before).any(1)).squeeze(1).tolist())
        [3, 7]
    """

    def __init__(
        self, dense: Iterable[nn.Parameter], sparse: Iterable[nn.Parameter], lr: float = 1e-3, weight_decay: float = 0.0
    ) -> None:
        dense, sparse = list(dense), list(sparse)
        if not sparse:
            raise ValueError("SparseDenseAdam needs sparse parameters; use torch.optim.Adam without them")
        self.optimizers: list[torch.optim.Optimizer] = [torch.optim.SparseAdam(sparse, lr=lr)]
        if dense:
            self.optimizers.insert(0, torch.optim.Adam(dense, lr=lr, weight_decay=weight_decay))
        super().__init__(dense + sparse, {"lr": lr})
        # The inner optimizers' own groups, so that a learning-rate scheduler's changes reach them.
        self.param_groups = [group for optimizer in self.optimizers for group in optimizer.param_groups]

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for optimizer in self.optimizers:
            optimizer.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"optimizers": [optimizer.state_dict() for optimizer in self.optimizers]}

    def load_state_dict(self, state_dict: dict) -> None:
        if "optimizers" not in state_dict or len(state_dict["optimizers"]) != len(self.optimizers):
            raise ValueError("optimizer state is not a SparseDenseAdam state of the same parameters")
        for optimizer, state in zip(self.optimizers, state_dict["optimizers"]):
            optimizer.load_state_dict(state)


def adam(module: nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam over ``module``'s trainable parameters; :class:`SparseDenseAdam` where some embedding tables have
    sparse gradients."""
    sparse_ids = {id(m.weight) for m in module.modules() if isinstance(m, nn.Embedding) and m.sparse}
    trainable = [p for p in module.parameters() if p.requires_grad]
    if not sparse_ids:
        return torch.optim.Adam(trainable, lr=lr, weight_decay=weight_decay)
    if weight_decay:
        raise ValueError("sparse_gradients=True cannot take weight_decay (SparseAdam has none): set weight_decay 0")
    sparse = [p for p in trainable if id(p) in sparse_ids]
    return SparseDenseAdam([p for p in trainable if id(p) not in sparse_ids], sparse, lr=lr)
