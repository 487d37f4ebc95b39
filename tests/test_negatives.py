import pytest
import torch

from lightning_rec.data.negatives import (
    InteractionSet,
    exact_unseen_draws,
    sample_distinct_negatives,
    sample_negatives,
)
from lightning_rec.data_modules import MovieLens1MDataModule, MovieLens100KDataModule
from tests.conftest import write_ml100k


def test_training_negatives_avoid_positives_and_follow_the_seed(ml1m):
    batches = list(ml1m.train_dataloader())
    users = torch.cat([b["user"] for b in batches])
    negatives = torch.cat([b["negative_items"] for b in batches])
    assert negatives.shape[1] == ml1m.num_negatives
    assert users.dtype == negatives.dtype == batches[0]["item"].dtype == torch.int64  # the epoch holds int32
    rows = users.unsqueeze(1).expand_as(negatives)
    assert not ml1m.train_pairs.contains(rows.reshape(-1), negatives.reshape(-1)).any()
    # Same seed and epoch: identical epoch; the next epoch draws new negatives.
    assert torch.equal(ml1m._train_columns(0)["negative_items"], ml1m._train_columns(0)["negative_items"])
    assert not torch.equal(ml1m._train_columns(0)["negative_items"], ml1m._train_columns(1)["negative_items"])


def test_negatives_drawn_in_chunks_are_uniform_over_each_users_unseen_items(monkeypatch):
    monkeypatch.setattr("lightning_rec.data.negatives.DRAW_CHUNK_ROWS", 7)  # many chunks, users across chunk ends
    users = torch.arange(4).repeat_interleave(25)
    seen = torch.tensor([[0, 1], [2, 3], [4, 5], [6, 7]])
    exclude = InteractionSet(torch.arange(4).repeat_interleave(2), seen.reshape(-1), num_items=10)
    negatives = sample_negatives(users, 400, exclude, torch.Generator().manual_seed(0))
    for user in range(4):
        counts = torch.bincount(negatives[users == user].reshape(-1), minlength=10).float()
        assert (counts[seen[user]] == 0).all()
        unseen = counts[counts > 0]
        assert len(unseen) == 8 and (unseen / unseen.mean() - 1).abs().max() < 0.1  # 1,250 draws each
    again = sample_negatives(users, 400, exclude, torch.Generator().manual_seed(0))
    assert torch.equal(negatives, again)


def test_membership_over_the_sorted_users_key_slice_matches_the_global_search():
    generator = torch.Generator().manual_seed(0)
    known_users, known_items = (
        torch.randint(50, (400,), generator=generator),
        torch.randint(30, (400,), generator=generator),
    )
    pairs = InteractionSet(known_users, known_items, num_items=30)
    users = torch.randint(3, 47, (5000,), generator=generator).sort().values
    items = torch.randint(30, (5000,), generator=generator)
    found = pairs.contains(users, items, users_sorted=True)
    assert torch.equal(found, pairs.contains(users, items)) and found.any() and not found.all()
    assert not pairs.contains(torch.tensor([60]), torch.tensor([1]), users_sorted=True).any()  # past the last key


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


def test_eval_candidates_depend_on_seed_and_user_alone_and_are_uniform_over_unseen_items():
    # User 0 has seen 10 of 50 items (drawn by rejection); user 1 has seen 44 (fewer than 2 x 5 unseen: the
    # smallest-hash path). Each user's rows must not depend on the other users in the call, nor their order.
    users = torch.tensor([0] * 10 + [1] * 44)
    exclude = InteractionSet(users, torch.cat([torch.arange(10), torch.arange(44)]), num_items=50)
    both = sample_distinct_negatives(torch.tensor([0, 1, 0]), 5, exclude, seed=4)
    assert torch.equal(both[0], both[2])
    assert torch.equal(both[1], sample_distinct_negatives(torch.tensor([1]), 5, exclude, seed=4)[0])
    assert not torch.equal(both, sample_distinct_negatives(torch.tensor([0, 1, 0]), 5, exclude, seed=5))
    draws = torch.stack([sample_distinct_negatives(torch.tensor([0, 1]), 5, exclude, seed) for seed in range(600)])
    for user, unseen in ((0, range(10, 50)), (1, range(44, 50))):
        counts = torch.bincount(draws[:, user].reshape(-1), minlength=50)
        assert (draws[:, user].sort(1).values.diff(dim=1) != 0).all()  # distinct within each row
        assert set(torch.nonzero(counts).squeeze(1).tolist()) == set(unseen)
        expected = 600 * 5 / len(unseen)
        assert counts[list(unseen)].float().sub(expected).abs().max() < 5 * expected**0.5


def test_a_user_who_has_seen_almost_everything_still_gets_negatives():
    # 97 of 100 items seen: rejection alone needs hundreds of rounds for some rows; the exact draw finishes.
    exclude = InteractionSet(torch.zeros(97, dtype=torch.long), torch.arange(97), num_items=100)
    negatives = sample_negatives(torch.zeros(500, dtype=torch.long), 4, exclude, torch.Generator().manual_seed(0))
    assert set(negatives.flatten().tolist()) == {97, 98, 99}


def test_exact_unseen_draws_are_uniform_over_each_users_unseen_items():
    generator = torch.Generator().manual_seed(0)
    users, items = [], []
    for user in range(20):
        seen = torch.randperm(12, generator=generator)[: user % 12].tolist()
        users += [user] * len(seen)
        items += seen
    exclude = InteractionSet(torch.tensor(users), torch.tensor(items), num_items=12)
    rows = torch.arange(20).repeat_interleave(3000)
    draws = exact_unseen_draws(rows, exclude, generator)
    assert not exclude.contains(rows, draws).any()
    for user in range(20):
        counts = torch.bincount(draws[rows == user], minlength=12)
        unseen = 12 - user % 12
        assert int((counts > 0).sum()) == unseen
        assert counts[counts > 0].float().sub(3000 / unseen).abs().max() < 5 * (3000 / unseen) ** 0.5


def test_too_few_unseen_items_names_the_users(tmp_path):
    dm = MovieLens100KDataModule(str(write_ml100k(tmp_path)), num_eval_negatives=12)  # 15 items, 6 seen each
    with pytest.raises(ValueError, match=r"12 users have fewer than num_eval_negatives=12 .*user ids \['1', '10'"):
        dm.test_dataloader()


def test_kept_rows_get_the_draws_of_the_whole_draw(monkeypatch):
    monkeypatch.setattr("lightning_rec.data.negatives.DRAW_CHUNK_ROWS", 7)  # kept rows in several chunks
    exclude = InteractionSet(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), num_items=30)
    users = torch.arange(3).repeat_interleave(10)
    every = sample_negatives(users, 4, exclude, torch.Generator().manual_seed(3))
    keep = torch.tensor([0, 6, 6, 7, 20, 29])  # repeats: a process's share wraps around at the epoch's end
    kept = sample_negatives(users, 4, exclude, torch.Generator().manual_seed(3), keep=keep)
    assert torch.equal(kept, every[keep])
    with pytest.raises(ValueError, match="ascending"):  # a search over unsorted rows would return other rows' draws
        sample_negatives(users, 4, exclude, torch.Generator().manual_seed(3), keep=keep.flip(0))


@pytest.mark.parametrize("options", [{}, {"history_length": 3}, {"train_mode": "sequences", "history_length": 4}])
def test_each_process_builds_only_its_batches_and_they_equal_one_processs(monkeypatch, options):
    # Under DDP a process holds its share of the epoch, not all of it; its batches (negatives included) must be
    # exactly those a single process would run at the same places, or the process count would change the run.
    dm = MovieLens1MDataModule(batch_size=96, **options)
    single = list(dm.train_dataloader())
    built, name = [], "_train_columns" if dm.train_mode == "pairs" else "_sequence_columns"
    make_columns = getattr(dm, name)
    monkeypatch.setattr(dm, name, lambda epoch, positions: built.append(positions) or make_columns(epoch, positions))
    for rank in range(3):
        monkeypatch.setattr("lightning_rec.data.batching.rank_and_world_size", lambda rank=rank: (rank, 3))
        shard = list(dm.train_dataloader())
        assert len(built[-1]) < len(single) * dm.batch_size / 2  # a third of the rows, plus at most one batch
        for i, batch in enumerate(shard):
            expected = single[(rank + 3 * i) % len(single)]
            assert batch.keys() == expected.keys()
            for key in batch:
                assert torch.equal(batch[key], expected[key]), (rank, i, key)
