"""Packaging: compatible ranges in setup.py, the exact versions in constraints.txt, the commands
that use them, and a library that installs alone (no `configs`, no test-only dependency)."""

import ast
import os
import pathlib
import re
import subprocess
import sys

import ml_collections
import pytest
from packaging.requirements import Requirement

from configs import base
from stdiff_jax import conditional, errors

REPO = pathlib.Path(__file__).resolve().parents[1]
LIBRARY = REPO / "stdiff_jax"
INSTALL = 'pip install -c constraints.txt -e ".[test,plots,mujoco]" && python -m pytest -q -rs -n 2'


def setup_lists():
    """setup.py's CORE list and EXTRAS dict, read without running setup()."""
    found = {}
    for node in ast.parse((REPO / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and node.targets[0].id in ("CORE", "EXTRAS"):
            found[node.targets[0].id] = ast.literal_eval(node.value)
    return found["CORE"], found["EXTRAS"]


def constraints():
    """{name: version} of constraints.txt, every line name==version."""
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)==([0-9][0-9A-Za-z.]*)", line).groups()
            pins[name.lower()] = version
    return pins


def test_core_dependencies_are_ranges_and_the_constraints_pin_versions_inside_them():
    core, extras = setup_lists()
    pins = constraints()
    for text in core:
        requirement = Requirement(text)
        operators = {spec.operator for spec in requirement.specifier}
        assert operators == {">=", "<"}, f"{text}: a compatible range, lower and upper bound"
    requirements = [Requirement(text) for text in core + sum(extras.values(), [])]
    assert {r.name.lower() for r in requirements} == set(pins), "constraints.txt pins exactly these"
    for requirement in requirements:
        assert requirement.specifier.contains(pins[requirement.name.lower()]), requirement
    assert [r for r in extras["test"] if r.startswith("chex")] and not any(
        r.startswith("chex") for r in core), "chex is a test dependency"


def test_ci_and_the_readme_install_the_constraints():
    readme = (REPO / "README.md").read_text()
    assert f"python3 -m venv .venv-test && . .venv-test/bin/activate && {INSTALL}" in readme
    assert 'pip install -c constraints.txt -e ".[plots]" && python -m stdiff_jax.main' in readme
    assert INSTALL in (REPO / ".ci" / "run").read_text()


def test_only_stdiff_jax_is_installed():
    """configs/ stays a folder of the repository: no top-level `configs` in site-packages."""
    setup = (REPO / "setup.py").read_text()
    assert 'find_packages(include=["stdiff_jax", "stdiff_jax.*"])' in setup


def imported_modules(path):
    """Top-level names of every module a source file imports, anywhere in it."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_library_imports_neither_configs_nor_test_dependencies():
    offenders = {str(path.relative_to(REPO)): sorted(imported_modules(path) & {"configs", "chex"})
                 for path in sorted(LIBRARY.rglob("*.py"))}
    assert not {k: v for k, v in offenders.items() if v}
    # And every module imports in a process without configs (chex may come in through optax).
    modules = [".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
               for p in sorted(LIBRARY.rglob("*.py"))]
    code = ("import importlib, sys\nsys.modules['configs'] = None\n"
            f"for name in {modules!r}:\n    importlib.import_module(name)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_conditional_settings_come_from_the_config_passed_in():
    config = base.base_config()
    settings = conditional.condition_settings(config, num_samples=7)
    assert settings.num_samples == 7 and settings.method == config.condition.method
    # A run's config.json from before some settings existed: name them, take them as overrides.
    old = ml_collections.ConfigDict(config.to_dict())
    with old.unlocked():
        del old.condition["ridge"], old.condition["correction"]
    with pytest.raises(errors.UserError, match=r"config.condition.\{correction, ridge\}"):
        conditional.condition_settings(old)
    settings = conditional.condition_settings(old, ridge=1e-3, correction="projection")
    assert settings.correction == "projection" and settings.ridge == 1e-3
    with pytest.raises(errors.UserError, match="Unknown conditional-sampling setting"):
        conditional.condition_settings(config, nonsense=1)
