"""Where a trained model's samples lose variance: along the sampler's path, per channel and bin.

    python benchmarks/variance.py --workdir=W [--num=1000] [--steps=100]

Runs DDIM (eta 0, --steps steps, uniform in log-SNR) from noise with the workdir's network and
prints, at 20 points of the path, in the normalised video space the network sees and per channel
(real part, imaginary part, trend): the variance of z against the marginal the data would give
(alpha^2 var(x0) + sigma^2), and the variance of the clean prediction x0_hat against the real
videos'; then, of the final samples, the power |S|^2 per frequency bin against the real videos',
before and after the decoder's projection onto consistent STFTs (decode, encode again), and the
within-window standard deviation of the decoded series against the real one (median over
channels). Variances are summed over the video's elements before the ratio is taken.
Used in docs/ablations.md ("A Gaussian prior under the network").
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from stdiff_jax import saved_model, video
from stdiff_jax.data import dataset_of
from stdiff_jax.diffusion import predictions
from stdiff_jax.schedule import alpha_sigma

flags.DEFINE_string("workdir", None, "A trained workdir.")
flags.DEFINE_integer("num", 1000, "Samples.")
flags.DEFINE_integer("steps", 100, "DDIM steps.")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS
CHANNELS = ("re", "im", "trend")


def ratios(a, b):
    """Per channel: summed element variances of a over those of b (a, b: (N, T, F, K, 3))."""
    return " ".join(f"{a[..., c].var(0).sum() / b[..., c].var(0).sum():.3f}" for c in range(3))


def main(argv):
    del argv
    start = time.process_time()
    config = saved_model.load_config(FLAGS.workdir)
    tm = saved_model.load(config, FLAGS.workdir)
    vc, norm, length = config.video, tm.host.normalizer, tm.host.series_shape[0]
    apply_fn = saved_model.apply_fn_of(tm.model)
    real = dataset_of(config.data).unit_windows[:5000] * 2 - 1
    x0 = np.asarray(tm.to_video(real))
    marginal_var = x0.var(0)

    @jax.jit
    def clean(z, logsnr):
        v = apply_fn(tm.params, z, jnp.full((z.shape[0],), logsnr, jnp.float32))
        return predictions(z, v, logsnr).x0

    grid = np.linspace(config.diffusion.logsnr_min, config.diffusion.logsnr_max, FLAGS.steps + 1)
    z = np.random.default_rng(0).standard_normal((FLAGS.num, *x0.shape[1:])).astype(np.float32)
    print(f"log-SNR | z var / marginal ({' '.join(CHANNELS)}) | x0_hat var / real")
    for i, (now, after) in enumerate(zip(grid[:-1], grid[1:])):
        x0_hat = np.asarray(clean(jnp.asarray(z), float(now)))
        alpha, sigma = map(float, alpha_sigma(now))
        if i % max(1, FLAGS.steps // 20) == 0:
            expected = np.broadcast_to(alpha ** 2 * marginal_var + sigma ** 2, z.shape[1:])
            z_ratio = " ".join(f"{z[..., c].var(0).sum() / expected[..., c].sum():.3f}"
                               for c in range(3))
            print(f"{now:7.1f} | {z_ratio} | {ratios(x0_hat, x0)}", flush=True)
        eps = (z - alpha * x0_hat) / sigma
        alpha, sigma = map(float, alpha_sigma(after))
        z = alpha * x0_hat + sigma * eps
    samples = np.asarray(clean(jnp.asarray(z), float(grid[-1])))
    print(f"final   |                        | {ratios(samples, x0)}")

    raw, raw_real = np.asarray(norm.denormalize(samples)), np.asarray(norm.denormalize(x0))
    series = np.asarray(video.video_to_series(raw, vc.n_fft, vc.hop, length, vc.window))
    projected = np.asarray(video.series_to_video(series, vc.n_fft, vc.hop, vc.ema_alpha,
                                                 vc.window))

    def power(v):  # (F,) mean |S|^2 per bin
        return (v[..., 0] ** 2 + v[..., 1] ** 2).mean(axis=(0, 1, 3))

    def per_bin(v):
        return " ".join(f"{r:.2f}" for r in power(v) / power(raw_real))

    print(f"power per frequency bin, generated / real: {per_bin(raw)}")
    print(f"  after the projection onto consistent STFTs: {per_bin(projected)}")
    within = np.median(series.std(1).mean(0) / real.std(1).mean(0))
    print(f"within-window std, generated / real (median over channels): {within:.3f}")
    print(f"{time.process_time() - start:.0f} CPU s")


if __name__ == "__main__":
    app.run(main)
