"""Orbax checkpoints of a training run: the train state and the host-side state a resume needs.

Every checkpoint step directory holds two items:
  state  the `TrainState` arrays (params, EMA params, optimizer state, step, RNG key). They are
         restored straight into the shardings of the *current* mesh, whatever mesh wrote them, so a
         checkpoint written on 8 devices restores on 1 and the reverse.
  host   JSON: the data iterator position, the best validation loss and patience counter, the data
         scaler, the video normaliser and attention statistics, and the data shape. Float32 and
         float64 values survive JSON exactly (Python writes the shortest repr that round-trips).

Saves are asynchronous: `save` returns once the arrays are copied off the devices, and the files are
written in a background thread while training goes on (so the donated state may be overwritten).
Orbax writes each step into `<step>.orbax-checkpoint-tmp*` and renames it to `<step>` only once every
item is complete; steps are listed from finished directories only, so a crash mid-save leaves a
temporary directory that a resume ignores, never a half checkpoint (tests/test_train.py checks it).

Replica 0 writes each array (Orbax's replica-parallel writing is off): the state is small and
replicated, and splitting every array over the replicas costs one compiled slice per array and
device (20 s for the first save of the smoke model on 8 CPU devices).

Retention: the last `keep` checkpoints, plus the one with the best validation loss (a checkpoint
carries a validation loss only when it was saved right after an evaluation).
"""

import logging

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

STATE, HOST = "state", "host"
VAL_LOSS = "val_loss"


class QuietOrbax(logging.Filter):
    """A log filter: Orbax logs every save at INFO; keep its warnings and everything else.

    `absl.logging.get_absl_handler().addFilter(QuietOrbax())`, as the command line does.
    """

    def filter(self, record):
        return record.levelno >= logging.WARNING or "/orbax/" not in record.pathname


def _val_loss(metrics):
    return metrics[VAL_LOSS]


def create_manager(directory, keep, async_saves=True):
    """A CheckpointManager over `directory` keeping the last `keep` steps plus the best one."""
    if keep < 1:
        raise ValueError(f"config.train.keep_checkpoints must be at least 1, got {keep}.")
    preservation = policies.AnyPreservationPolicy([
        policies.LatestN(n=keep),
        # BestN keeps the last n after sorting; reverse=True sorts descending, so the lowest loss.
        policies.BestN(get_metric_fn=_val_loss, reverse=True, n=1,
                       keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(
        best_fn=_val_loss, best_mode="min", preservation_policy=preservation,
        enable_async_checkpointing=async_saves, create=True)
    arrays = ocp.type_handlers.create_type_handler_registry(
        (jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False)))
    handlers = {STATE: ocp.PyTreeCheckpointHandler(type_handler_registry=arrays),
                HOST: ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(directory, item_handlers=handlers, options=options)


def save(manager, step, state, host, val_loss=None):
    """Starts an asynchronous save of `state` (a pytree of arrays) and `host` (JSON-able dict)."""
    manager.save(
        int(step),
        args=ocp.args.Composite(**{STATE: ocp.args.PyTreeSave(state),
                                   HOST: ocp.args.JsonSave(host)}),
        metrics=None if val_loss is None else {VAL_LOSS: float(val_loss)},
        force=True)


def restore_host(manager, step):
    """The JSON item of a step (cheap: no arrays are read)."""
    return manager.restore(int(step), args=ocp.args.Composite(**{HOST: ocp.args.JsonRestore()}))[HOST]


def restore_state(manager, step, abstract_state):
    """The arrays of a step, laid out as `abstract_state` (ShapeDtypeStructs with shardings) says."""
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_state)
    restored = manager.restore(int(step), args=ocp.args.Composite(**{
        STATE: ocp.args.PyTreeRestore(item=abstract_state, restore_args=restore_args)}))
    return restored[STATE]


def restore_subtree(manager, step, key, abstract_subtree):
    """One top-level entry of a step's state (e.g. "ema_params"), laid out as `abstract_subtree`
    says; the rest of the state (optimizer moments, ...) is not read."""
    item = {key: abstract_subtree}
    restore_args = ocp.checkpoint_utils.construct_restore_args(item)
    restored = manager.restore(int(step), args=ocp.args.Composite(**{
        STATE: ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=True)}))
    return restored[STATE][key]


def best_or_latest_step(manager):
    """The step with the lowest validation loss, or the latest when none carries one; None if empty."""
    best = manager.best_step()  # None when no step carries a validation loss
    return manager.latest_step() if best is None else best


def to_json(tree):
    """Numpy arrays and scalars -> nested lists and Python numbers, for the host item."""
    if isinstance(tree, dict):
        return {key: to_json(value) for key, value in tree.items()}
    if isinstance(tree, (np.ndarray, np.generic)):
        return np.asarray(tree).tolist()
    return tree
