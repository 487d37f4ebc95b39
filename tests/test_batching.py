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


def test_an_order_column_gathers_rows_and_the_columns_stay_intact():
    # A make_columns that returns the same dict every epoch must give the same batches every epoch.
    columns = {"item": torch.arange(10, 15), "order": torch.tensor([4, 0, 3, 1, 2], dtype=torch.int32)}
    stream = BatchStream(5, 2, lambda epoch: columns)
    for _ in range(2):
        batches = list(stream)
        assert [b["item"].tolist() for b in batches] == [[14, 10], [13, 11], [12]]
        assert [b["row"].dtype for b in batches] == [torch.int64] * 3  # the stored rows, as int64
    assert set(columns) == {"item", "order"}
