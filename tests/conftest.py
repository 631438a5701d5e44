"""Test defaults: CPU only, the data directory at ../shared/data unless one is set, and a
persistent compilation cache so the many tests (and their subprocesses) that build the same small
networks compile each program once.

Under pytest-xdist (`-n 2`; pytest.ini asks for `--dist loadgroup`) the tests of a module that use
one of its module-scoped fixtures (a trained run, a notebook's run) go to one worker, which builds
the fixture once: spread over two workers, each built its own copy (118 s for test_train's)."""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("STDIFF_DATA_DIR", str(REPO.parent / "shared" / "data"))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(REPO / ".pytest_cache" / "jax_cache"))


def uses_module_fixture(item):
    definitions = item._fixtureinfo.name2fixturedefs  # pytest has no public accessor for scopes
    return any(defs[-1].scope == "module" for defs in definitions.values())


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the groups from the marks
def pytest_collection_modifyitems(items):
    for item in items:
        if isinstance(item, pytest.Function) and uses_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
