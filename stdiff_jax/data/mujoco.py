"""The MuJoCo hopper data set of Diffusion-TS, generated with dm_control (optional extra `mujoco`).

Diffusion-TS (Utils/Data_utils/mujoco_dataset.py) loads `hopper`/`stand`, seeds numpy's global RNG
with 123 and, for each sample, sets inside `physics.reset_context()`:
qpos[:2] ~ U(0, 0.5) (size 2), then qpos[2:] ~ U(-2, 2) (size 5), then qvel ~ U(-5, 5) (size 7);
then for each of the L steps it records qpos (7) and qvel (7) and calls `physics.step()`.
The draws are made here from `RandomState(seed)` in that order, which gives the same numbers
without touching numpy's global RNG (dm_control draws nothing from it inside this loop).

Like Diffusion-TS, the raw trajectories are then min-max scaled per column over all samples and
steps (its MinMaxScaler is fitted on `data.reshape(-1, 14)`), like the real data sets.
"""

import os
import warnings

import numpy as np

from stdiff_jax.data.download import resolve_data_dir, save_npy_atomic

NUM_SAMPLES = 10_000
SEED = 123


def _hopper_physics():
    # Only the physics is used: no renderer, so no display or GL library is needed.
    os.environ.setdefault("MUJOCO_GL", "disable")
    try:
        from dm_control import suite
    except ImportError as e:
        raise ImportError(
            "The mujoco data set is generated with dm_control, which is not installed: "
            "install the optional extra with `pip install -e .[mujoco]`.") from e
    return suite.load("hopper", "stand").physics


def hopper_trajectories(num=NUM_SAMPLES, seq_len=24, seed=SEED):
    """(num, seq_len, 14) float64 raw trajectories: qpos (7) then qvel (7) at each step."""
    physics = _hopper_physics()
    rng = np.random.RandomState(seed)
    nq, nv = physics.data.qpos.shape[0], physics.data.qvel.shape[0]
    data = np.zeros((num, seq_len, nq + nv))  # (N, L, 14)
    for i in range(num):
        with physics.reset_context():
            # x and z of the torso first: z > 0 keeps the hopper above ground.
            physics.data.qpos[:2] = rng.uniform(0, 0.5, size=2)
            physics.data.qpos[2:] = rng.uniform(-2, 2, size=nq - 2)
            physics.data.qvel[:] = rng.uniform(-5, 5, size=nv)
        for t in range(seq_len):
            data[i, t, :nq] = physics.data.qpos
            data[i, t, nq:] = physics.data.qvel
            physics.step()
    return data


def cached_hopper_trajectories(data_dir=None, seq_len=24, num=NUM_SAMPLES, seed=SEED):
    """`hopper_trajectories`, cached as .npy in the data directory (generating 10,000 takes ~20 s).

    A read-only data directory only costs the cache: the data are generated and a warning says so.
    """
    path = resolve_data_dir(data_dir) / f"mujoco_hopper_n{num}_L{seq_len}_seed{seed}.npy"
    if path.exists():
        data = np.load(path)
        if data.shape != (num, seq_len, 14):
            raise ValueError(f"The cached MuJoCo data {path} has shape {data.shape}, expected "
                             f"{(num, seq_len, 14)}: delete it to generate it again.")
        return data
    data = hopper_trajectories(num, seq_len, seed)
    try:
        save_npy_atomic(path, data)
    except OSError as e:
        warnings.warn(f"Could not cache the generated MuJoCo data at {path} ({e}); it will be "
                      f"generated again next time. Point data.root or $STDIFF_DATA_DIR at a "
                      f"writable directory to keep it.")
    return data
