"""stdiff_jax: time series generation as video diffusion (ST-Diff) in JAX/Flax.

Dependencies are compatible ranges, so the package installs beside what an environment (a Colab
runtime, another project) already holds; the lower bounds are versions the tests passed with. The
exact versions CI and the README's commands install are pinned in constraints.txt
(`pip install -c constraints.txt -e ".[test,plots,mujoco]"`). Only the `stdiff_jax` package is
installed: `configs/` stays a folder of the repository, loaded by path (--config=configs/x.py) or
from the repository root.
"""
import setuptools

CORE = [
    "jax>=0.6.0,<0.11",
    "jaxlib>=0.6.0,<0.11",
    "flax>=0.10.7,<0.13",
    "optax>=0.2.5,<0.3",  # optax.tree.norm
    "orbax-checkpoint>=0.11.16,<0.13",  # checkpoint_managers' preservation policies
    "numpy>=2.0,<3",
    "scipy>=1.13,<2",
    "ml-collections>=1.0,<2",
    "absl-py>=2.1,<3",
    "etils[epath]>=1.7,<2",  # workdir paths (gs:// too); Orbax depends on it already
    # JAX's own dependency, bounded here because 0.7 makes every start slower: importing it takes
    # 1.7 CPU s against 0.6's 0.3 (numpy 2.4, 2026-12-06), a third of `stdiff_jax.main`'s import.
    "ml-dtypes>=0.6.0,<0.7",
]
EXTRAS = {
    "test": ["pytest>=8.0", "pytest-xdist>=3.5", "chex>=0.1.89", "nbclient>=0.10",
             "nbformat>=5.10", "ipykernel>=6.29", "jupyter-client>=8.6"],
    "plots": ["matplotlib>=3.8", "scikit-learn>=1.4"],
    # dm_control 1.0.50 breaks with mujoco 4 ('MjModel' has no 'flex_vertedge').
    "mujoco": ["dm-control>=1.0.50,<1.1", "mujoco>=3.17,<4"],
}

setuptools.setup(
    name="stdiff_jax",
    version="0.1.0",
    description="Spectro-Temporal Diffusion: multivariate time series generated as videos.",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["stdiff_jax", "stdiff_jax.*"]),
    install_requires=CORE,
    extras_require=EXTRAS,
)
