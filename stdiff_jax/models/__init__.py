"""The ST-Diff network (`STDiff`, built by `create_model`) and its named sizes."""
from stdiff_jax.models.sizes import CPU_SIZES, TABLE4, stft_settings, table4_row
from stdiff_jax.models.stdiff import STDiff, attention_biases, create_model, pool_patches

__all__ = ["CPU_SIZES", "TABLE4", "STDiff", "attention_biases", "create_model", "pool_patches",
           "stft_settings", "table4_row"]
