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

Damage: a step any of whose parts fails to read is reported in one line, moved into
`<workdir>/damaged_checkpoints/` (outside the directory Orbax lists steps from; nothing is deleted)
and the next step is used. Orbax reads every step's metrics and step metadata when a manager
opens, so `create_manager` first checks those two JSON files of every finished step
(`set_aside_unreadable`); every restore goes through `restore_first_intact`, which moves aside a
step whose array metadata, arrays or host item fail to read. Only a failure to read counts
(`UnreadableCheckpoint`): a readable checkpoint of another network (`CheckpointMismatch`), a
config error or a bug stops the run and the checkpoint stays where it is.
"""

import contextlib
import datetime
import logging

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as policies

from stdiff_jax import errors
from stdiff_jax import workdir as workdir_lib
from stdiff_jax.errors import MissingFileError, UserError

STATE, HOST = "state", "host"
VAL_LOSS = "val_loss"
DAMAGED_DIR = "damaged_checkpoints"  # beside the checkpoint directory
REASON_CHARS = 300  # Orbax's errors embed TensorStore specs; the cause's first line suffices.
# The JSON files of a step that Orbax reads when a manager opens, and the state's array metadata
# (Orbax's names).
STEP_METADATA, METRICS_FILE, ARRAY_METADATA = "_CHECKPOINT_METADATA", "metrics/metrics", "_METADATA"
COMMIT_FILE = "commit_success.txt"  # Orbax's mark of a finished save in a bucket
# The last commit whose mixture priors hold a basis per Gaussian; since the next one its Gaussians
# share one basis (prior.MixturePrior), and its checkpoints do not restore into later versions.
LAST_BASIS_PER_GAUSSIAN = "e81f95c"

logger = logging.getLogger(__name__)


class CheckpointMismatch(UserError):
    """A checkpoint holds arrays of other shapes than the network being restored."""


class NoIntactCheckpoint(UserError):
    """Every checkpoint of a directory failed to read."""


class UnreadableCheckpoint(Exception):
    """A step's files failed to read (truncated, overwritten, missing): damage. The message is the
    underlying reason in one line."""


class QuietOrbax(logging.Filter):
    """A log filter: Orbax logs every save at INFO, and a background save's disk error (no space,
    read-only) with its traceback from each thread it passes; keep Orbax's other warnings and
    errors, and everything else. The disk error reaches the caller, which reports it once.

    `absl.logging.get_absl_handler().addFilter(QuietOrbax())`, as the command line does.
    """

    def filter(self, record):
        if "/orbax/" not in record.pathname:
            return True
        disk = record.exc_info and errors.disk_error(record.exc_info[1])
        return record.levelno >= logging.WARNING and not disk


def _val_loss(metrics):
    return metrics[VAL_LOSS]


def create_manager(directory, keep, async_saves=True):
    """A CheckpointManager over `directory` keeping the last `keep` steps plus the best one."""
    if keep < 1:
        raise UserError(f"config.train.keep_checkpoints must be at least 1, got {keep}.")
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
    set_aside_unreadable(directory)
    return ocp.CheckpointManager(directory, item_handlers=handlers, options=options)


@contextlib.contextmanager
def saving(directory, keep):
    """An asynchronous `create_manager` for the block. At its end, also on an error, the last save
    finishes and the manager closes (its threads stop), and a directory nothing was saved into
    is removed."""
    manager = create_manager(directory, keep)
    try:
        yield manager
    finally:
        try:
            manager.wait_until_finished()
        finally:
            manager.close()
            remove_if_empty(directory)


def save(manager, step, state, host, val_loss=None):
    """Starts an asynchronous save of `state` (a pytree of arrays) and `host` (JSON-able dict)."""
    manager.save(
        int(step),
        args=ocp.args.Composite(**{STATE: ocp.args.PyTreeSave(state),
                                   HOST: ocp.args.JsonSave(host)}),
        metrics=None if val_loss is None else {VAL_LOSS: float(val_loss)},
        force=True)


def _read(what, read, *args, **kwargs):
    """read(*args, **kwargs), with any failure raised as UnreadableCheckpoint naming `what`."""
    try:
        return read(*args, **kwargs)
    except Exception as e:  # Orbax and TensorStore raise plain Exception and ValueError.
        raise UnreadableCheckpoint(f"{what}: {read_error_reason(e)}") from e


def restore_host(manager, step):
    """The JSON item of a step (cheap: no arrays are read)."""
    return _read(f"the {HOST} item", manager.restore, int(step),
                 args=ocp.args.Composite(**{HOST: ocp.args.JsonRestore()}))[HOST]


def restore_state(manager, step, abstract_state):
    """The arrays of a step, laid out as `abstract_state` (ShapeDtypeStructs with shardings) says."""
    check_stored_shapes(manager, step, abstract_state)
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_state)
    restored = _read(f"the {STATE} arrays", manager.restore, int(step), args=ocp.args.Composite(**{
        STATE: ocp.args.PyTreeRestore(item=abstract_state, restore_args=restore_args)}))
    return restored[STATE]


def restore_subtree(manager, step, key, abstract_subtree):
    """One top-level entry of a step's state (e.g. "ema_params"), laid out as `abstract_subtree`
    says; the rest of the state (optimizer moments, ...) is not read."""
    item = {key: abstract_subtree}
    check_stored_shapes(manager, step, item, partial=True)
    restore_args = ocp.checkpoint_utils.construct_restore_args(item)
    restored = _read(f"the {STATE} arrays", manager.restore, int(step), args=ocp.args.Composite(**{
        STATE: ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=True)}))
    return restored[STATE][key]


def _shapes(tree):
    return {jax.tree_util.keystr(path, simple=True, separator="/"): tuple(leaf.shape)
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def check_stored_shapes(manager, step, item, partial=False):
    """Raises CheckpointMismatch when the state of a step holds other shapes than `item` (the
    abstract arrays about to be restored; with `partial`, some entries of the state): the config
    or the code builds another network. Reads only the step's array metadata, whose absence is
    damage (Orbax would return no arrays, which would read as another network)."""
    if not (epath.Path(manager.directory) / str(step) / STATE / ARRAY_METADATA).exists():
        raise UnreadableCheckpoint(f"the array metadata: {STATE}/{ARRAY_METADATA} is missing")
    stored = _shapes(_read("the array metadata", manager.item_metadata, int(step))[STATE])
    wanted = _shapes(item)
    names = wanted.keys() if partial else wanted.keys() | stored.keys()
    differ = sorted(name for name in names if stored.get(name) != wanted.get(name))
    if any(name.endswith("prior_basis") and len(stored.get(name, ())) == 3 for name in differ):
        raise CheckpointMismatch(
            f"Checkpoint step {step} in {manager.directory} holds a mixture prior with a basis per "
            f"Gaussian, the layout of stdiff_jax up to commit {LAST_BASIS_PER_GAUSSIAN}; this "
            f"version keeps one basis and a rotation a Gaussian (the same prior, read more "
            f"cheaply). Resume or sample it with that version (git checkout "
            f"{LAST_BASIS_PER_GAUSSIAN}, then pip install -e .), or train anew with another "
            f"--workdir; the checkpoint is left as it is.")
    if differ:
        name = differ[0]
        raise CheckpointMismatch(
            f"Checkpoint step {step} in {manager.directory} holds another network than this config "
            f"builds ({len(differ)} arrays differ, e.g. {name}: stored "
            f"{stored.get(name, 'absent')}, built {wanted.get(name, 'absent')}). Use the config it "
            f"was trained with (config.json in the workdir), or train this one with another "
            f"--workdir.")


def steps_to_try(manager, step=None, prefer_best=False):
    """The steps `restore_first_intact` tries, in order: `step` alone when given; else every step,
    newest first, led by the best by validation loss when `prefer_best`."""
    steps = sorted(manager.all_steps(), reverse=True)
    if step is not None:
        if int(step) not in steps:
            raise MissingFileError(f"No checkpoint of step {step} in {manager.directory}; it holds "
                                   f"steps {sorted(steps)}.")
        return [int(step)]
    best = manager.best_step() if prefer_best else None  # None when no step carries a val loss
    return sorted(steps, key=lambda s: (s != best, -s))


def read_error_reason(error):
    """One line on why a read failed: the innermost cause's type and first line."""
    while (inner := error.__cause__ or (None if error.__suppress_context__ else
                                        error.__context__)) is not None:
        error = inner
    line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    reason = f"{type(error).__name__}: {line}" if line else type(error).__name__
    return reason if len(reason) <= REASON_CHARS else reason[:REASON_CHARS - 3] + "..."


def move_aside(directory, step):
    """Moves a step's directory to <workdir>/damaged_checkpoints/<step>-<time>, where Orbax does not
    look for steps (process 0 moves). Returns the new path."""
    source = epath.Path(directory) / str(step)
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S.%f")
    target = source.parent.parent / DAMAGED_DIR / f"{step}-{stamp}"
    if jax.process_index() == 0 and source.exists():
        target.parent.mkdir(exist_ok=True)
        source.rename(target)
    return target


def set_aside_unreadable(directory):
    """Moves aside (`move_aside`, reported in one line each) the steps of a checkpoint directory
    whose step metadata is missing or unreadable, or whose metrics are unreadable: Orbax reads
    both of every step when a manager opens (broken metrics stop it; broken step metadata fills
    the log with errors, and loses the step's time and metrics)."""
    directory = epath.Path(directory)
    for step in finished_steps(directory):
        step_dir = directory / str(step)
        reason = (_unreadable_json(step_dir, STEP_METADATA, required=True)
                  or _unreadable_json(step_dir, METRICS_FILE, required=False))
        if reason:
            target = move_aside(directory, step)
            logger.warning("Checkpoint step %d at %s cannot be read (%s); moved it to %s.", step,
                           step_dir, reason, target)
    if jax.process_count() > 1:  # no process opens a manager before the damaged steps are gone
        multihost_utils.sync_global_devices("stdiff_jax.checkpoint.set_aside_unreadable")


def finished_steps(directory):
    """The steps of a checkpoint directory's finished saves, from its listing: locally Orbax names
    a step's directory by its number once the save is complete (an unfinished save's carries a
    suffix); in a bucket, where nothing is renamed, a complete step holds commit_success.txt."""
    directory = epath.Path(directory)
    if not directory.is_dir():
        return []
    steps = [p for p in directory.iterdir() if p.name.isdigit()]
    if workdir_lib.is_remote(directory):
        steps = [p for p in steps if (p / COMMIT_FILE).exists()]
    return sorted(int(p.name) for p in steps)


def _unreadable_json(step_dir, name, required):
    """Why the JSON object step_dir/name cannot be read, in one line; None when it can (or when it
    is absent and not `required`)."""
    if not (step_dir / name).exists():
        return f"{name} is missing" if required else None
    try:
        workdir_lib.read_json(step_dir / name)
    except workdir_lib.UnreadableRecord as e:
        return f"{name}: {e}"
    return None


def restore_first_intact(manager, steps, restore):
    """(step, restore(step)) for the first of `steps` that reads; (None, None) when there are none.

    restore(step) reads with this module's functions. A step whose reading raises
    UnreadableCheckpoint is damaged: it is reported in one warning line (step, path, reason), moved
    aside (`move_aside`) and the next step is tried; any other error propagates. Raises
    NoIntactCheckpoint, naming the directory, when every step is damaged.
    """
    directory = epath.Path(manager.directory)
    for i, step in enumerate(steps):
        try:
            return step, restore(step)
        except UnreadableCheckpoint as e:
            target = move_aside(directory, step)
            manager.reload()
            logger.warning("Checkpoint step %d at %s cannot be read (%s); moved it to %s%s.",
                           step, directory / str(step), e, target,
                           f", trying step {steps[i + 1]}" if i + 1 < len(steps) else "")
    if steps:
        raise NoIntactCheckpoint(
            f"No intact checkpoint in {directory}: step(s) {', '.join(map(str, steps))} "
            f"could not be read (the warnings above say why) and were moved to "
            f"{directory.parent / DAMAGED_DIR}; nothing was deleted. "
            f"Train again with this --workdir to start from step 0, or use another --workdir.")
    return None, None


def remove_if_empty(directory):
    """Removes a checkpoint directory that holds nothing, so a run that failed before its first
    save leaves no workdir that looks trained."""
    with contextlib.suppress(OSError, ValueError):  # not empty (ValueError in epath), or gone
        epath.Path(directory).rmdir()


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
