"""Test defaults: CPU only, the data directory at ../shared/data unless one is set, and a
persistent compilation cache so the many tests (and their subprocesses) that build the same small
networks compile each program once."""

import os
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("STDIFF_DATA_DIR", str(REPO.parent / "shared" / "data"))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(REPO / ".pytest_cache" / "jax_cache"))
