import torch

from lightning_rec.data.negatives import InteractionSet, sample_distinct_negatives, sample_negatives
from lightning_rec.data_modules import MovieLens1MDataModule


def test_training_negatives_avoid_positives_and_follow_the_seed(ml1m):
    batches = list(ml1m.train_dataloader())
    users = torch.cat([b["user"] for b in batches])
    negatives = torch.cat([b["negative_items"] for b in batches])
    assert negatives.shape[1] == ml1m.num_negatives
    rows = users.unsqueeze(1).expand_as(negatives)
    assert not ml1m.train_pairs.contains(rows.reshape(-1), negatives.reshape(-1)).any()
    # Same seed and epoch: identical epoch; the next epoch draws new negatives.
    assert torch.equal(ml1m._train_columns(0)["negative_items"], ml1m._train_columns(0)["negative_items"])
    assert not torch.equal(ml1m._train_columns(0)["negative_items"], ml1m._train_columns(1)["negative_items"])


def test_sample_negatives_on_a_nearly_full_catalog():
    exclude = InteractionSet(torch.tensor([0, 0, 0]), torch.tensor([0, 1, 2]), num_items=4)
    negatives = sample_negatives(torch.tensor([0, 0]), 5, exclude, torch.Generator().manual_seed(0))
    assert (negatives == 3).all()


def test_eval_candidates_are_distinct_unseen_and_identical_across_instances(ml1m):
    first = next(iter(ml1m.test_dataloader()))
    other = next(iter(MovieLens1MDataModule(batch_size=128, eval_batch_size=128).test_dataloader()))
    assert torch.equal(first["candidate_items"], other["candidate_items"])
    candidates = first["candidate_items"]
    assert torch.equal(candidates[:, 0], first["target_item"])
    negatives = candidates[:, 1:]
    assert negatives.shape[1] == 99
    assert (negatives.sort(1).values.diff(dim=1) != 0).all()
    rows = first["user"].unsqueeze(1).expand_as(negatives).reshape(-1)
    assert not ml1m.all_pairs.contains(rows, negatives.reshape(-1)).any()


def test_distinct_negatives_when_almost_every_item_is_needed():
    exclude = InteractionSet(torch.tensor([0, 1]), torch.tensor([0, 1]), num_items=12)
    negatives = sample_distinct_negatives(torch.tensor([0, 1]), 11, exclude, seed=3)
    assert sorted(negatives[0].tolist()) == list(range(1, 12))
    assert sorted(negatives[1].tolist()) == [0] + list(range(2, 12))
