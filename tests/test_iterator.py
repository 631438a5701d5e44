"""BatchIterator: seeded per-epoch shuffling, full coverage, and exact resume."""

import numpy as np
import pytest

from stdiff_jax.data import BatchIterator, split_batch


def take(it, n):
    return [next(it) for _ in range(n)]


def test_same_seed_same_order_and_seed_matters():
    a, b, c = BatchIterator(50, 8, seed=3), BatchIterator(50, 8, seed=3), BatchIterator(50, 8, seed=4)
    batches_a, batches_b, batches_c = take(a, 20), take(b, 20), take(c, 20)
    for x, y in zip(batches_a, batches_b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(batches_a, batches_c))


def test_epoch_order_is_the_seeded_permutation():
    it = BatchIterator(10, 5, seed=7)
    for epoch in range(3):
        order = np.concatenate(take(it, 2))
        np.testing.assert_array_equal(order, np.random.default_rng([7, epoch]).permutation(10))


def test_every_index_once_per_epoch_and_partial_batch_dropped():
    it = BatchIterator(23, 5, seed=0)
    assert it.steps_per_epoch == 4
    epochs = [np.concatenate(take(it, 4)) for _ in range(3)]
    for seen in epochs:
        assert seen.shape == (20,) and len(np.unique(seen)) == 20 and seen.max() < 23
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled each epoch
    exact = BatchIterator(20, 5, seed=0)
    np.testing.assert_array_equal(np.sort(np.concatenate(take(exact, 4))), np.arange(20))


@pytest.mark.parametrize("drawn", [0, 3, 4, 9])  # start, mid-epoch, epoch boundary, later epoch
def test_resume_continues_exactly(drawn):
    original = BatchIterator(23, 5, seed=11)
    take(original, drawn)
    state = original.state()
    assert all(type(v) is int for v in state.values())
    resumed = BatchIterator(23, 5, seed=11)
    resumed.restore(state)
    for x, y in zip(take(original, 10), take(resumed, 10)):
        np.testing.assert_array_equal(x, y)


def test_next_batch_indexes_the_array():
    data = np.arange(40).reshape(10, 2, 2)
    a, b = BatchIterator(10, 4, seed=1), BatchIterator(10, 4, seed=1)
    np.testing.assert_array_equal(a.next_batch(data), data[next(b)])
    with pytest.raises(ValueError, match="covers 10 examples"):
        a.next_batch(data[:9])


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size 11 is larger than the 10 examples"):
        BatchIterator(10, 11, seed=0)
    it = BatchIterator(10, 5, seed=0)
    with pytest.raises(ValueError, match="position must lie in"):
        it.restore({"epoch": 0, "position": 2})


def test_split_batch():
    batch = np.arange(24).reshape(8, 3)
    split = split_batch(batch, 4)
    assert split.shape == (4, 2, 3)
    np.testing.assert_array_equal(split.reshape(8, 3), batch)
    with pytest.raises(ValueError, match="divisible by 3"):
        split_batch(batch, 3)
