"""Test defaults: CPU only, and the data directory at ../shared/data unless one is set."""

import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault(
    "STDIFF_DATA_DIR", str(pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"))
