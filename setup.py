"""stdiff_jax: time series generation as video diffusion (ST-Diff) in JAX/Flax."""
import setuptools

CORE = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "numpy==2.4.6",
    "scipy==1.17.1",
    "chex==0.1.92",
    "ml-collections==1.1.0",
    "absl-py==2.5.1",
]
EXTRAS = {
    "test": ["pytest==9.2.0", "pytest-xdist==3.8.0", "nbclient==0.11.0", "nbformat==5.11.1",
             "ipykernel==7.4.0", "jupyter-client==8.10.0"],
    "plots": ["matplotlib==3.11.2", "scikit-learn==1.9.1"],
    # dm_control 1.0.50 breaks with mujoco 4 ('MjModel' has no 'flex_vertedge'): pin both.
    "mujoco": ["dm-control==1.0.50", "mujoco==3.17.0"],
}

setuptools.setup(
    name="stdiff_jax",
    version="0.1.0",
    description="Spectro-Temporal Diffusion: multivariate time series generated as videos.",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["stdiff_jax", "stdiff_jax.*", "configs"]),
    install_requires=CORE,
    extras_require=EXTRAS,
)
