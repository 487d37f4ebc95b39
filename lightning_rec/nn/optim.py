"""Adam for embedding tables with sparse gradients, alone or stepped together with Adam for the dense parameters."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn


def _closure_loss(closure: Callable[[], torch.Tensor] | None) -> torch.Tensor | None:
    """The loss of an optimizer step's closure, computed with gradients (the step itself runs without)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class CatchUpSparseAdam(torch.optim.Optimizer):
    """Adam for embedding tables with sparse gradients that follows dense Adam's path at a sparse step's cost.

    Dense Adam keeps moving a row the batch did not look up: its gradient is zero, but its momentum is not,
    so the row drifts on by ``lr * m_j / sqrt(v_j)`` while both moments decay (``m_j = beta1^j m``,
    ``v_j = beta2^j v``). Lazy Adam (``torch.optim.SparseAdam``) skips that drift and never decays a moment of an
    untouched row, which for a rarely seen row means ever smaller steps. Here a row catches up when it is next
    looked up: the drift of the ``s`` steps it sat out is one geometric sum, ``lr * m / sqrt(v) * sum_j r^j`` with
    ``r = beta1 / sqrt(beta2)``, then its moments decay by ``beta^s`` and the step proceeds as Adam's. A step
    still costs only the rows the batch looked up; :meth:`flush` brings every row up to date (before evaluation
    or saving weights for use). The update rule is dense Adam's up to ``eps`` inside the sum and the bias
    corrections, taken at the catching-up step (both vanish past the first few thousand steps); the path differs
    only in that a row's gradient is taken at its value before catching up (stale by the drift of the steps it sat
    out, at most ``lr / (1 - r)`` per coordinate).

    Example:
        >>> table = nn.Embedding(4, 2, sparse=True)
        >>> initial = table.weight.detach().clone()
        >>> optimizer = CatchUpSparseAdam([table.weight], lr=0.1)
        >>> for rows in ([0, 1], [1], [1]):  # row 0 sits out two steps
        ...     optimizer.zero_grad()
        ...     table(torch.tensor(rows)).sum().backward()
        ...     optimizer.step()
        >>> stale = table.weight[0].clone()
        >>> optimizer.flush()  # row 0 drifts on by its momentum, as under dense Adam
        >>> bool((table.weight[0] < stale).all()), torch.equal(table.weight[2:], initial[2:])  # never looked up
        (True, True)
    """

    def __init__(
        self, params: Iterable[nn.Parameter], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:  # fmt: skip
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    def _state(self, parameter: nn.Parameter) -> dict:
        state = self.state[parameter]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.long)
            state["exp_avg"] = torch.zeros_like(parameter)
            state["exp_avg_sq"] = torch.zeros_like(parameter)
        if "row_step" not in state:
            # New, or lazy Adam's state (a checkpoint from before catch-up): every row is up to date at its step.
            state["step"] = torch.as_tensor(state["step"], dtype=torch.long)
            state["row_step"] = torch.full((len(parameter),), int(state["step"]), device=parameter.device)
        return state

    @staticmethod
    def _adam_step(exp_avg: Tensor, exp_avg_sq: Tensor, group: dict, step: int) -> Tensor:
        """Adam's bias-corrected step direction (before the learning rate) at step ``step``."""
        beta1, beta2 = group["betas"]
        step = max(step, 1)
        return (exp_avg / (1 - beta1**step)) / ((exp_avg_sq / (1 - beta2**step)).sqrt() + group["eps"])

    @staticmethod
    def _store(state: dict, rows: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, step: int) -> None:
        state["exp_avg"][rows], state["exp_avg_sq"][rows] = exp_avg, exp_avg_sq
        state["row_step"][rows] = step

    def _catch_up(self, parameter: Tensor, state: dict, rows: Tensor, group: dict, until: int) -> tuple[Tensor, Tensor]:
        """Applies to ``rows`` the zero-gradient steps after their ``row_step`` up to step ``until``; returns
        their decayed moments."""
        beta1, beta2 = group["betas"]
        sat_out = (until - state["row_step"][rows]).to(parameter.dtype).unsqueeze(1)
        exp_avg, exp_avg_sq = state["exp_avg"][rows], state["exp_avg_sq"][rows]
        ratio = beta1 / math.sqrt(beta2)
        drift = ratio * (1 - ratio**sat_out) / (1 - ratio)  # sum of ratio^j for j = 1..sat_out
        parameter.index_add_(0, rows, self._adam_step(exp_avg, exp_avg_sq, group, until) * drift, alpha=-group["lr"])
        return exp_avg * beta1**sat_out, exp_avg_sq * beta2**sat_out

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = _closure_loss(closure)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                if not parameter.grad.is_sparse:
                    raise ValueError("CatchUpSparseAdam steps sparse gradients: build the table with sparse=True")
                grad = parameter.grad.coalesce()
                rows, values = grad.indices()[0], grad.values()
                state = self._state(parameter)
                state["step"] += 1
                step = int(state["step"])
                exp_avg, exp_avg_sq = self._catch_up(parameter, state, rows, group, step - 1)
                exp_avg.mul_(beta1).add_(values, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(values, values, value=1 - beta2)
                parameter.index_add_(0, rows, self._adam_step(exp_avg, exp_avg_sq, group, step), alpha=-group["lr"])
                self._store(state, rows, exp_avg, exp_avg_sq, step)
        return loss

    @torch.no_grad()
    def flush(self) -> None:
        """Brings every row up to the current step (the drift dense Adam would have applied by now)."""
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter not in self.state:
                    continue
                state = self._state(parameter)
                step = int(state["step"])
                rows = torch.nonzero(state["row_step"] < step).squeeze(1)
                self._store(state, rows, *self._catch_up(parameter, state, rows, group, step), step)


class SparseDenseAdam(torch.optim.Optimizer):
    """``torch.optim.Adam`` for ``dense`` parameters and a sparse Adam for ``sparse`` ones (the weights of
    ``nn.Embedding(..., sparse=True)``), stepped together, so that Lightning's automatic optimisation, which
    steps one optimizer, runs both. A step costs what the batch touches, not the catalog. The sparse rows are
    stepped by :class:`CatchUpSparseAdam` (dense Adam's update rule), or with ``catch_up=False`` by lazy
    ``torch.optim.SparseAdam`` (only the rows a batch looked up move, and only their moments decay).

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
        self,
        dense: Iterable[nn.Parameter],
        sparse: Iterable[nn.Parameter],
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        catch_up: bool = True,
        betas: tuple[float, float] = (0.9, 0.999),
    ) -> None:
        dense, sparse = list(dense), list(sparse)
        if not sparse:
            raise ValueError("SparseDenseAdam needs sparse parameters; use torch.optim.Adam without them")
        sparse_adam = CatchUpSparseAdam if catch_up else torch.optim.SparseAdam
        self.optimizers: list[torch.optim.Optimizer] = [sparse_adam(sparse, lr=lr, betas=betas)]
        if dense:
            self.optimizers.insert(0, torch.optim.Adam(dense, lr=lr, betas=betas, weight_decay=weight_decay))
        super().__init__(dense + sparse, {"lr": lr})
        # The inner optimizers' own groups, so that a learning-rate scheduler's changes reach them.
        self.param_groups = [group for optimizer in self.optimizers for group in optimizer.param_groups]

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = _closure_loss(closure)
        for optimizer in self.optimizers:
            optimizer.step()
        return loss

    def flush(self) -> None:
        """Brings every sparse row up to date where the sparse part catches up (:class:`CatchUpSparseAdam`)."""
        for optimizer in self.optimizers:
            if isinstance(optimizer, CatchUpSparseAdam):
                optimizer.flush()

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


def adam(
    module: nn.Module, lr: float, weight_decay: float = 0.0, catch_up: bool = True,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.Optimizer:  # fmt: skip
    """Adam over ``module``'s trainable parameters; :class:`SparseDenseAdam` where some embedding tables have
    sparse gradients (their rows stepped by :class:`CatchUpSparseAdam`, or lazily without ``catch_up``)."""
    sparse_ids = {id(m.weight) for m in module.modules() if isinstance(m, nn.Embedding) and m.sparse}
    trainable = [p for p in module.parameters() if p.requires_grad]
    if not sparse_ids:
        return torch.optim.Adam(trainable, lr=lr, betas=betas, weight_decay=weight_decay)
    if weight_decay:
        raise ValueError("sparse_gradients=True cannot take weight_decay (a sparse step has none): set weight_decay 0")
    sparse = [p for p in trainable if id(p) in sparse_ids]
    dense = [p for p in trainable if id(p) not in sparse_ids]
    return SparseDenseAdam(dense, sparse, lr=lr, catch_up=catch_up, betas=betas)
