import torch

from lightning_rec.data import batching
from lightning_rec.data.batching import BatchStream, csr, dense_mask


def stream(num_rows, batch_size, even_shards, monkeypatch, rank, world_size):
    monkeypatch.setattr(batching, "rank_and_world_size", lambda: (rank, world_size))
    columns = {"row": torch.arange(num_rows)}
    return list(BatchStream(num_rows, batch_size, lambda epoch: columns, even_shards=even_shards))


def test_eval_shards_partition_rows_without_duplicates(monkeypatch):
    shards = [stream(10, 3, False, monkeypatch, rank, 3) for rank in range(3)]
    rows = torch.cat([b["row"] for shard in shards for b in shard])
    assert sorted(rows.tolist()) == list(range(10))


def test_train_shards_have_equal_length(monkeypatch):
    shards = [stream(10, 3, True, monkeypatch, rank, 3) for rank in range(3)]
    assert {len(shard) for shard in shards} == {2}  # 4 batches padded to 6 by wrapping around


def test_dense_mask_from_csr():
    indptr, indices = csr(torch.tensor([1, 0, 1]), torch.tensor([4, 2, 0]), num_users=3)
    mask = dense_mask(indptr, indices, torch.tensor([1, 2]), num_columns=5)
    assert mask.tolist() == [[True, False, False, False, True], [False] * 5]
