"""Reused chunk buffers: nothing handed out earlier is overwritten by a later chunk."""

from __future__ import annotations

import numpy as np

from salt.data.buffers import BufferPool
from tests.helpers import event_numbers, make_dm


def test_pool_reuses_buffers_by_layout():
    pool = BufferPool()
    a = pool.take((10, 4), np.float32)
    assert a.shape == (10, 4) and a.base is not None
    pool.give_back([a, a])  # twice: kept once
    b = pool.take((7, 4), np.float32)
    assert b.base is a.base and b.shape == (7, 4)
    c = pool.take((7, 4), np.float32)
    assert c.base is not a.base  # the one buffer is in use
    assert pool.take((12, 4), np.float32).base is not a.base  # too small once given back
    pool.give_back([np.zeros(3)])  # not from the pool: ignored
    assert pool.take((3,), np.float64).base is not None


def test_batches_survive_the_reuse_of_their_chunk_buffers(tiny_files):
    """Many small chunks cycle through the same buffers; every batch kept to the end still
    holds its own rows (inputs and labels), as written in the file."""
    dm = make_dm(tiny_files, chunk_size=50, block_size=10, batch_size=25)
    dm.request_labels({"jets": ["eventNumber"], "tracks": ["ftagTruthOriginLabel"]})
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert sorted(event_numbers(batches).tolist()) == list(range(300))
    for inputs, masks, labels in batches:
        rows = labels["jets"]["eventNumber"].numpy()
        np.testing.assert_allclose(inputs["jets"][:, 0].numpy(), 10.0 * rows)
        d0 = inputs["tracks"][..., 0].numpy()
        valid = ~masks["tracks"].numpy()
        expected = rows[:, None] + np.arange(d0.shape[1])[None, :] / 100.0
        np.testing.assert_allclose(d0[valid], expected[valid], rtol=1e-6)
        origin = labels["tracks"]["ftagTruthOriginLabel"].numpy()
        expected_origin = np.broadcast_to(np.arange(d0.shape[1]) % 8, d0.shape)
        np.testing.assert_array_equal(origin[valid], expected_origin[valid])


def test_a_converted_chunk_shares_no_memory_with_its_records(tiny_files):
    """The records' buffer goes back to the pool as soon as the chunk is converted (the next
    read reuses it), so nothing in the chunk may be a view of it."""
    dm = make_dm(tiny_files)
    dm.request_labels({"jets": ["eventNumber", "pt"], "tracks": ["ftagTruthOriginLabel", "d0"]})
    dm.setup("fit")
    dataset = dm.datasets["train"]
    pool = BufferPool()
    records = dataset.source.read_segments([(0, 100)], pool)
    inputs, masks, labels = dataset.builder.build(records, np.arange(100), None, pool)
    arrays = [*inputs.values(), *masks.values()]
    arrays += [a for fields in labels.values() for a in fields.values()]
    for array in arrays:
        assert not any(np.shares_memory(array, raw) for raw in records.values())
