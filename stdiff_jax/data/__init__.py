"""Benchmark data sets as stride-1 windows in [-1, 1], and the batch iterator over them."""

from stdiff_jax.data.iterator import BatchIterator, split_batch
from stdiff_jax.data.loaders import Dataset, dataset_of, load_dataset
from stdiff_jax.data.scaling import MinMaxScaler

__all__ = ["BatchIterator", "Dataset", "MinMaxScaler", "dataset_of", "load_dataset", "split_batch"]
