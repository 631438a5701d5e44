"""stdiff_jax: multivariate time series generated as spectro-temporal videos (ST-Diff)."""

__version__ = "0.1.0"
