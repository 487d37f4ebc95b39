"""NeuMF: the fusion of GMF and MLP (He et al. 2017, "Neural Collaborative Filtering", Sec. 3.4)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_rec.models.base import Recommender
from lightning_rec.models.gmf import GMF, GMFBranch
from lightning_rec.models.mlp import MLP, MLPBranch
from lightning_rec.nn.losses import RecommendationLoss


class NeuMF(Recommender):
    """``score(u, i) = h^T [GMF(u, i); MLP(u, i)]`` with separate embeddings for the two branches.

    :meth:`init_from_pretrained` is the paper's "pretrain" (Sec. 3.4.1): copy the embeddings and tower
    of trained GMF and MLP models and set ``h = [alpha h_GMF; (1 - alpha) h_MLP]``.

    Args:
        num_users: number of users (linked from the data module).
        num_items: number of items (linked from the data module).
        factor: predictive factors of each branch (GMF embedding size, MLP last layer).
        num_layers: hidden layers of the MLP branch.
        dropout: dropout in the MLP branch.
        loss: ``bce`` (the paper) or ``bpr``.
        learning_rate: Adam learning rate.
        weight_decay: Adam weight decay.
        top_k: evaluation cut-offs.
        predict_top_k: items returned per user by ``predict``.
        sparse_gradients: sparse gradients for the ID tables, stepped by catch-up Adam (dense Adam's update,
            computed only for the rows a batch looked up): a step's cost follows the batch, not the catalog. Needs
            ``weight_decay`` 0.

    Example:
        >>> import torch
        >>> gmf, mlp = GMF(3, 5, factor=4), MLP(3, 5, factor=4, num_layers=2)
        >>> model = NeuMF(3, 5, factor=4, num_layers=2)
        >>> model.init_from_pretrained(gmf, mlp, alpha=0.5)
        >>> torch.allclose(model.gmf.user_embedding.weight, gmf.branch.user_embedding.weight)
        True
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        factor: int = 64,
        num_layers: int = 3,
        dropout: float = 0.0,
        loss: RecommendationLoss = "bce",
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        top_k: Sequence[int] = (5, 10, 20),
        predict_top_k: int = 10,
        sparse_gradients: bool = False,
    ) -> None:
        super().__init__(num_users, num_items, loss, learning_rate, weight_decay, top_k, predict_top_k)
        self.save_hyperparameters()
        self.gmf = GMFBranch(num_users, num_items, factor, sparse_gradients)
        self.mlp = MLPBranch(num_users, num_items, factor, num_layers, dropout, sparse_gradients)
        self.output = nn.Linear(2 * factor, 1)

    @torch.no_grad()
    def init_from_pretrained(self, gmf: GMF, mlp: MLP, alpha: float = 0.5) -> None:
        """Initialises both branches and the output layer from trained GMF and MLP models."""
        self.gmf.load_state_dict(gmf.branch.state_dict())
        self.mlp.load_state_dict(mlp.branch.state_dict())
        self.output.weight.copy_(torch.cat([alpha * gmf.output.weight, (1 - alpha) * mlp.output.weight], dim=1))
        self.output.bias.copy_(alpha * gmf.output.bias + (1 - alpha) * mlp.output.bias)

    @classmethod
    def from_pretrained_checkpoints(
        cls, gmf_checkpoint: str, mlp_checkpoint: str, alpha: float = 0.5, **kwargs
    ) -> NeuMF:
        """A NeuMF sized like the checkpoints' models and initialised from them."""
        gmf, mlp = GMF.load_from_checkpoint(gmf_checkpoint), MLP.load_from_checkpoint(mlp_checkpoint)
        if (gmf.num_users, gmf.num_items) != (mlp.num_users, mlp.num_items):
            raise ValueError("the GMF and MLP checkpoints were trained on different catalogs")
        model = cls(
            gmf.num_users, gmf.num_items, factor=gmf.hparams.factor, num_layers=mlp.hparams.num_layers, **kwargs
        )
        model.init_from_pretrained(gmf, mlp, alpha)
        return model

    def item_id_parameters(self) -> list[nn.Parameter]:
        return [self.gmf.item_embedding.weight, self.mlp.item_embedding.weight]

    def score(self, users: Tensor, items: Tensor, history: Tensor | None = None) -> Tensor:
        features = torch.cat([self.gmf(users, items), self.mlp(users, items)], dim=-1)
        return self.output(features).squeeze(-1)
