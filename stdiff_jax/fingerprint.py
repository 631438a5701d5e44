"""A workdir belongs to one data set and one network shape: workdir/fingerprint.json records both.

  data   the data set (a registered name, or csv:/npy: with the file's resolved path), the
         windows' shape, a sha256 of the windows and the min-max scaler;
  model  the series (L, K) and video shapes, the network's size settings, its parameter count
         and a sha256 of its parameter shapes.

The first training run writes the record. A later run compares its own before it touches the
workdir: other data stops it (`WorkdirMismatch`) unless it resumes anyway with
--allow_workdir_mismatch, and another network always stops it (its checkpoints cannot be restored
into that network). A workdir with checkpoints but no readable record (lost, emptied, cut) cannot
be checked: it stops too, until --allow_workdir_mismatch says to go on and record this run's. A
workdir without checkpoints has nothing to protect: its record is replaced.
"""

import hashlib

import jax
import numpy as np
from absl import logging

from stdiff_jax import saved_model
from stdiff_jax import workdir as workdir_lib
from stdiff_jax.data.loaders import custom_file, dataset_of
from stdiff_jax.errors import UserError
from stdiff_jax.mesh import make_mesh

FILE = "fingerprint.json"
OVERRIDE = "--allow_workdir_mismatch"
SIZE_KEYS = ("patch_freq", "depth", "hidden", "heads", "mlp_ratio")
DIGEST_CHARS = 16


class WorkdirMismatch(UserError):
    """The workdir was trained on other data or holds another network."""


def _digest(data):
    return hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]


def resolved_data_name(name):
    """A data set's name with a csv:/npy: path made absolute, so a relative path from another
    folder still names the same file."""
    path = custom_file(name)
    return name if path is None else f"{name.partition(':')[0]}:{path.resolve()}"


def of_data(dataset):
    """The data part of the record, for a `stdiff_jax.data.Dataset` (with its classes and a
    sha256 of its labels, for a labelled one)."""
    record = {"name": resolved_data_name(dataset.name), "windows": list(dataset.windows.shape),
              "windows_sha256": _digest(np.ascontiguousarray(dataset.windows)),
              "scaler_min": dataset.scaler.min.tolist(),
              "scaler_max": dataset.scaler.max.tolist()}
    if getattr(dataset, "labels", None) is not None:
        record.update(classes=list(dataset.class_names),
                      labels_sha256=_digest(np.ascontiguousarray(dataset.labels)))
    return record


def checked_dataset(config, workdir, allow_data_mismatch=False):
    """The data set of `config`, after `check`ing that it is the one `workdir` was trained on."""
    dataset = dataset_of(config.data)
    check(workdir, {"data": of_data(dataset)}, allow_data_mismatch)
    return dataset


def of_model(config, series_shape, num_classes=0):
    """The model part of the record: what the network of `config` for series (L, K) and
    `num_classes` classes looks like."""
    model, video_shape = saved_model.build_model(config, tuple(series_shape), stats=None,
                                             num_classes=num_classes)
    params = saved_model.abstract_params(model, video_shape, make_mesh())
    shapes = [f"{jax.tree_util.keystr(path)}{leaf.shape}"
              for path, leaf in jax.tree_util.tree_leaves_with_path(params)]
    return {"series": list(series_shape), "video": list(video_shape),
            **{key: config.model[key] for key in SIZE_KEYS},
            "parameters": int(sum(leaf.size for leaf in jax.tree.leaves(params))),
            "parameter_shapes_sha256": _digest("\n".join(shapes).encode())}


def _shown(value):
    """A recorded value for a message: floats to 4 significant digits (the record keeps all)."""
    if isinstance(value, list):
        return f"[{', '.join(map(_shown, value))}]"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _differences(recorded, current):
    """'key: recorded X, this run Y' for every key whose values differ."""
    return [f"{key}: recorded {_shown(recorded.get(key))}, this run {_shown(current.get(key))}"
            for key in sorted(recorded.keys() | current.keys())
            if recorded.get(key) != current.get(key)]


def _read_record(path):
    """(the record at `path`, None), or (None, why there is none)."""
    if not path.exists():
        return None, "is missing"
    try:
        return workdir_lib.read_json(path), None
    except workdir_lib.UnreadableRecord as e:
        return None, f"cannot be read ({e})"


def _unchecked(workdir, reason, allow_data_mismatch):
    """A workdir with checkpoints and no readable record: a warning with `allow_data_mismatch`,
    else WorkdirMismatch."""
    if allow_data_mismatch:
        logging.warning("The workdir %s has checkpoints, but its %s %s; going on (%s) and "
                        "recording this run's data and network.", workdir, FILE, reason, OVERRIDE)
        return
    raise WorkdirMismatch(
        f"The workdir {workdir} has checkpoints, but its {FILE} {reason}, so this run cannot "
        f"check that it uses the data and the network the checkpoints were trained with. If it "
        f"does (the file was lost or damaged), pass {OVERRIDE}: the run goes on and records this "
        f"run's data and network as the workdir's (the network is still checked against the "
        f"checkpoints). Otherwise use another --workdir.")


def check(workdir, current, allow_data_mismatch=False):
    """Raises WorkdirMismatch when the record of a workdir with checkpoints differs from `current`
    ({"data": of_data(...), "model": of_model(...)}, either part may be left out), or is missing
    or unreadable.

    Different data, or no readable record, is only a warning with `allow_data_mismatch`; a
    different model never is.
    """
    workdir = workdir_lib.as_path(workdir)
    if not saved_model.checkpoint_steps(workdir):
        return
    recorded, reason = _read_record(workdir / FILE)
    if reason:
        return _unchecked(workdir, reason, allow_data_mismatch)
    model = _differences(recorded.get("model", {}), current["model"]) if "model" in current else []
    if model:
        raise WorkdirMismatch(
            f"The workdir {workdir} holds another network than this run builds ("
            f"{'; '.join(model)}), so its checkpoints cannot be restored. Use another --workdir "
            f"for this config, or run with the config the workdir was trained with (its "
            f"config.json).")
    data = _differences(recorded.get("data", {}), current["data"]) if "data" in current else []
    if data and allow_data_mismatch:
        logging.warning("The workdir %s was trained on other data (%s); resuming anyway (%s).",
                        workdir, "; ".join(data), OVERRIDE)
    elif data:
        raise WorkdirMismatch(
            f"The workdir {workdir} was trained on other data than this run's ({'; '.join(data)}). "
            f"Use another --workdir for this data (the default one is named after the data set), "
            f"or pass {OVERRIDE} to resume the trained model on this data anyway (it keeps the "
            f"recorded data's scaler and video statistics).")


def record(workdir, current):
    """Writes `current` as the workdir's record, unless the workdir has checkpoints and a readable
    record (then the record is the first run's, which `check` compared against)."""
    path = workdir_lib.as_path(workdir) / FILE
    kept = saved_model.checkpoint_steps(workdir) and _read_record(path)[1] is None
    if jax.process_index() == 0 and not kept:
        workdir_lib.write_json(path, current)
