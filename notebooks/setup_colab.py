"""The notebooks' set-up, shared: the first cell of each finds or clones the repository, then
calls `setup(repo)` from this file.

`setup` makes stdiff_jax and the repository's configs/ importable. Where the kernel already
imports stdiff_jax from `repo` (a checkout installed with `pip install -e .`, or on PYTHONPATH:
local Jupyter, CI) it installs nothing and touches no network. Elsewhere (Colab) it runs
`pip install -e repo[plots]` without constraints, so the runtime's own JAX, NumPy ... stay where
they lie within setup.py's ranges.
"""
import importlib.metadata
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys


def _version(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def imports_from(repo):
    """Whether `import stdiff_jax` finds the package of the checkout `repo`."""
    spec = importlib.util.find_spec("stdiff_jax")
    return bool(spec and spec.origin) and pathlib.Path(spec.origin).resolve().parents[1] == repo


def accelerator():
    """The JAX extra of this runtime's accelerator ("cuda12", "tpu"), or None on a CPU."""
    if shutil.which("nvidia-smi"):
        return "cuda12"
    if os.environ.get("COLAB_TPU_ADDR") or pathlib.Path("/dev/accel0").exists():
        return "tpu"
    return None


def pip_install(*args):
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", *args])


def setup(repo):
    """Makes the stdiff_jax of the checkout `repo` and its configs/ importable; returns repo,
    absolute. Installs only where the kernel does not import stdiff_jax from repo already."""
    repo = pathlib.Path(repo).resolve()
    if not (repo / "stdiff_jax").is_dir() or not (repo / "configs").is_dir():
        raise FileNotFoundError(f"{repo} is not a stdiff_jax repository (it needs stdiff_jax/ and "
                                f"configs/): set SOURCE to the repository's git URL or folder.")
    if not imports_from(repo):
        jax_before, jax_imported = _version("jax"), "jax" in sys.modules
        pip_install("-e", f"{repo}[plots]")
        jax_now = _version("jax")
        # pip moved JAX into setup.py's range: the accelerator's plugin must follow it.
        if jax_now != jax_before and accelerator():
            pip_install(f"jax[{accelerator()}]=={jax_now}")
        importlib.invalidate_caches()
        if jax_now != jax_before and jax_imported:
            print(f"JAX changed from {jax_before} to {jax_now} after this kernel imported it: "
                  f"restart the session (Colab: Runtime > Restart session) and run the notebook "
                  f"again.")
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))  # configs/ is a folder of the repository, not a package
    return repo
