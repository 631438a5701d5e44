"""One process of a multi-process CPU training run (driven by tests/test_multiprocess.py).

    python tests/multiprocess_worker.py PROCESS_ID NUM_PROCESSES PORT WORKDIR OUT.npz

With NUM_PROCESSES > 1 the processes join one JAX runtime over a loopback coordinator and use the
gloo CPU collectives, as hosts of a TPU pod do over their network. Process 0 writes the final
parameters (flattened) to OUT.npz.
"""

import sys

import jax
import numpy as np


def main(process_id, num_processes, port, workdir, out):
    if num_processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                                   num_processes=num_processes, process_id=process_id)
    from configs import sines
    from stdiff_jax import data, mesh, train

    config = sines.get_config("smoke")
    config.train.num_steps = 6
    config.train.batch_size = 16
    config.train.eval_every = 3
    config.train.checkpoint_every = 3
    full = data.load_dataset("sines", 24)
    dataset = data.Dataset(full.name, full.windows[:256], full.scaler, full.column_names)
    train.train_and_evaluate(config, workdir, dataset=dataset)
    state, _, _, step = train.restore_train_state(config, workdir, mesh.make_mesh(), step=6)
    if jax.process_index() == 0:
        leaves = jax.tree_util.tree_leaves_with_path(state.params)
        np.savez(out, **{jax.tree_util.keystr(path): np.asarray(leaf.addressable_data(0))
                         for path, leaf in leaves})
    print(f"process {process_id}: {jax.device_count()} devices, step {step}", flush=True)


if __name__ == "__main__":
    pid, nproc, port = (int(a) for a in sys.argv[1:4])
    main(pid, nproc, port, *sys.argv[4:6])
