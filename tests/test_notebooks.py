"""The notebooks run top to bottom in quick mode (nbclient), so they cannot rot unnoticed, and
their shared set-up (notebooks/setup_colab.py) installs only where the kernel lacks the checkout.

quickstart.ipynb trains the `smoke` config in a temporary directory, generates and scores;
from_checkpoint.ipynb then loads that run's checkpoint. A probe cell appended to the in-memory copy
of each notebook prints the kernel's results as JSON, so the tests check what the notebooks
computed, not only that no cell raised. The kernel is this interpreter (a kernelspec written to a
temporary JUPYTER_PATH), importing this checkout of stdiff_jax and configs.
"""

import importlib.util
import json
import math
import os
import pathlib
import sys

import nbformat
import numpy as np
import pytest
from ipykernel.kernelspec import write_kernel_spec
from nbclient import NotebookClient

from configs import sines
from stdiff_jax import checkpoint, saved_model

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
KERNEL = "python3"
CELL_TIMEOUT_S = 600  # a guard against a hung kernel, far above a cell's few seconds
QUICK_CONFIG = sines.get_config("smoke")  # what quick mode trains
WORKDIR = pathlib.Path("workdirs") / QUICK_CONFIG.name  # both notebooks' default in quick mode

QUICKSTART_PROBE = """
import json
print(json.dumps({
    "repo": str(REPO),
    "step": result["step"],
    "fake_shape": list(fake.shape),
    "fake_finite": bool(np.isfinite(fake).all()),
    "scores": {name: s["mean"] for name, s in scores.items()},
    "plots": sorted(os.path.basename(p) for p in paths),
    "imputed_shape": list(imputed.shape),
    "imputed_keeps_observed": bool(np.array_equal(
        imputed[:, ~gaps], np.broadcast_to(window[~gaps], imputed[:, ~gaps].shape))),
    "imputed_finite": bool(np.isfinite(imputed).all()),
}))
"""
FROM_CHECKPOINT_PROBE = """
import json
print(json.dumps({
    "repo": str(REPO),
    "step": int(step),
    "fake_shape": list(fake.shape),
    "fake_finite": bool(np.isfinite(fake).all()),
    "real_video_shape": list(real_video.shape),
    "fake_video_shape": list(fake_video.shape),
}))
"""


def run_notebook(name, cwd, env, probe):
    """Executes notebooks/<name> in `cwd`; returns (executed notebook, the probe cell's JSON)."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(probe))
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute(env=env)
    stdout = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    return nb, json.loads(stdout.strip().splitlines()[-1])


def saved_steps(workdir):
    """(every checkpoint step of workdir, the step generation loads: best, else latest)."""
    manager = checkpoint.create_manager(saved_model.checkpoint_dir(workdir),
                                        QUICK_CONFIG.train.keep_checkpoints, async_saves=False)
    steps, best = list(manager.all_steps()), checkpoint.best_or_latest_step(manager)
    manager.close()
    return steps, best


def count_images(nb):
    return sum("image/png" in o.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
               for o in cell.outputs)


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """Environment of the kernels; the kernelspec `python3` resolves to this interpreter."""
    root = tmp_path_factory.mktemp("jupyter")
    write_kernel_spec(root / "kernels" / KERNEL)
    env = dict(os.environ, STDIFF_NOTEBOOK_QUICK="1", IPYTHONDIR=str(root / "ipython"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               XLA_FLAGS="--xla_backend_optimization_level=0")  # halves compile time
    env.pop("STDIFF_WORKDIR", None)
    with pytest.MonkeyPatch.context() as mp:  # the kernelspec lookup runs in this process
        mp.setenv("JUPYTER_PATH", str(root))
        yield env


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory, kernel_env):
    cwd = tmp_path_factory.mktemp("notebooks")
    nb, probe = run_notebook("quickstart.ipynb", cwd, kernel_env, QUICKSTART_PROBE)
    return cwd, nb, probe


def test_notebooks_are_committed_clean():
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert {p.name for p in paths} >= {"quickstart.ipynb", "from_checkpoint.ipynb"}
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.nbformat == 4 and nb.metadata.kernelspec.name == KERNEL, path
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, (
                    f"{path.name}: clear the outputs before committing "
                    f"(jupyter nbconvert --clear-output --inplace {path.name}).")


def test_every_notebook_starts_with_the_same_set_up_cell():
    """One set-up, shared: the first code cell is the same everywhere (it finds or clones the
    repository and runs notebooks/setup_colab.py), with no placeholder to edit."""
    first_cells = {}
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        first_cells[path.name] = next(c.source for c in nb.cells if c.cell_type == "code")
        assert "OWNER" not in nbformat.writes(nb), path.name
    assert len(set(first_cells.values())) == 1, sorted(first_cells)
    cell = next(iter(first_cells.values()))
    assert 'SOURCE = ""  # @param {type:"string"}' in cell and "setup_colab.py" in cell


def load_setup_colab():
    spec = importlib.util.spec_from_file_location("setup_colab", NOTEBOOKS / "setup_colab.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_set_up_in_a_checkout_installs_nothing(monkeypatch):
    setup_colab = load_setup_colab()
    monkeypatch.setattr(setup_colab, "pip_install", lambda *a: pytest.fail(f"pip install {a}"))
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(REPO)])
    assert setup_colab.imports_from(REPO)
    assert setup_colab.setup(REPO) == REPO and sys.path[0] == str(REPO)


@pytest.mark.parametrize("accelerator,jax_moves,expected", [
    (None, True, []), ("cuda12", False, []), ("cuda12", True, ["jax[cuda12]==0.10.2"]),
    ("tpu", True, ["jax[tpu]==0.10.2"])])
def test_set_up_elsewhere_installs_the_copy_and_keeps_jax_plugins_in_step(
        tmp_path, monkeypatch, accelerator, jax_moves, expected):
    """On Colab: pip install -e of the clone, without constraints; an accelerator's JAX build
    follows only where pip moved JAX."""
    setup_colab = load_setup_colab()
    copy = tmp_path / "stdiff_jax_repo"
    (copy / "stdiff_jax").mkdir(parents=True)
    (copy / "configs").mkdir()
    versions = {"jax": "0.11.0" if jax_moves else "0.10.2"}
    calls = []

    def pip_install(*args):
        calls.append(list(args))
        versions["jax"] = "0.10.2"

    monkeypatch.setattr(setup_colab, "pip_install", pip_install)
    monkeypatch.setattr(setup_colab, "_version", versions.get)
    monkeypatch.setattr(setup_colab, "accelerator", lambda: accelerator)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert setup_colab.setup(copy) == copy and sys.path[0] == str(copy)
    assert calls == [["-e", f"{copy}[plots]"]] + [[extra] for extra in expected]
    with pytest.raises(FileNotFoundError, match="not a stdiff_jax repository"):
        setup_colab.setup(tmp_path)


def test_kernelspec_is_this_interpreter(kernel_env):
    from jupyter_client.kernelspec import KernelSpecManager

    assert KernelSpecManager().get_kernel_spec(KERNEL).argv[0] == sys.executable


@pytest.mark.slow
def test_quickstart_trains_generates_and_scores(quickstart_run):
    cwd, nb, probe = quickstart_run
    workdir = cwd / WORKDIR
    assert probe["repo"] == str(REPO)  # the set-up cell used this checkout
    assert probe["step"] == QUICK_CONFIG.train.num_steps
    shape = [QUICK_CONFIG.sample.num_samples, QUICK_CONFIG.data.seq_len, 5]
    assert probe["fake_shape"] == shape and probe["fake_finite"]
    assert np.load(workdir / "samples_unit.npy").shape == tuple(shape)
    assert set(probe["scores"]) == {"correlational"}
    assert all(math.isfinite(v) and v >= 0 for v in probe["scores"].values()), probe["scores"]
    assert probe["plots"] == ["acf.png", "kde.png", "psd.png", "tsne.png", "windows.png"]
    assert probe["imputed_shape"] == [10, QUICK_CONFIG.data.seq_len, 5]
    assert probe["imputed_keeps_observed"] and probe["imputed_finite"]
    # Loss curve, series, ACF/PSD, t-SNE, density and the imputed window.
    assert count_images(nb) >= 6


@pytest.mark.slow
def test_from_checkpoint_loads_the_quickstart_run(quickstart_run, kernel_env):
    cwd, _, _ = quickstart_run
    steps_before, expected = saved_steps(cwd / WORKDIR)

    nb, probe = run_notebook("from_checkpoint.ipynb", cwd, kernel_env, FROM_CHECKPOINT_PROBE)
    assert probe["repo"] == str(REPO)
    assert probe["step"] == expected
    assert saved_steps(cwd / WORKDIR)[0] == steps_before, "the notebook trained instead of loading"
    n, length, channels = 16, QUICK_CONFIG.data.seq_len, 5
    assert probe["fake_shape"] == [n, length, channels] and probe["fake_finite"]
    video_shape = probe["real_video_shape"]
    assert video_shape == probe["fake_video_shape"]
    assert video_shape[0] == n and video_shape[3:] == [channels, 3]
    # One series' frames, the mean frames, the spectra comparison.
    assert count_images(nb) >= 3
