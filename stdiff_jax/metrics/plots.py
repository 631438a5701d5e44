"""Qualitative plots of real vs generated windows: raw windows, ACF, PSD, t-SNE and kernel density
(PNG); and the loss curve of a training run.

matplotlib and scikit-learn are the optional extra `plots`; they are imported only when a plot
is drawn. t-SNE and the density follow TimeGAN's `visualization` (as in Diffusion-TS): each
window is reduced to its mean over channels (a length-L vector), up to `max_points` windows of
each set are drawn at random, t-SNE uses perplexity 40 and 300 iterations.
"""

import importlib
import json
import os
import pathlib

import numpy as np
import scipy.stats

from stdiff_jax.metrics.inputs import check_windows

REAL_STYLE = dict(color="tab:red", label="real")
FAKE_STYLE = dict(color="tab:blue", label="generated")


def _require(module):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"plots need the optional extra `plots` ({module} is missing): "
            "pip install 'stdiff_jax[plots]' (matplotlib, scikit-learn).") from e


def autocorrelation(x):
    """(K, L) autocorrelation of each channel at lags 0..L-1, averaged over windows (N, L, K).

    Each window is centred on its own mean and normalised by its lag-0 sum (the biased estimator
    used by statsmodels' `acf`); constant windows contribute zeros.
    """
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    length = x.shape[1]
    spectrum = np.fft.rfft(x, n=2 * length, axis=1)
    acov = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :length]  # (N, L, K)
    lag0 = acov[:, :1]
    acf = np.divide(acov, lag0, out=np.zeros_like(acov), where=lag0 > 0)
    return acf.mean(axis=0).T


def mean_psd(x):
    """(K, L // 2 + 1) power spectral density per channel, averaged over windows (N, L, K)."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    return (np.abs(np.fft.rfft(x, axis=1)) ** 2 / x.shape[1]).mean(axis=0).T


def _channel_grid(figure_cls, channels):
    cols = min(channels, 4)
    rows = -(-channels // cols)
    fig = figure_cls(figsize=(3.2 * cols, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[channels:]:
        ax.set_visible(False)
    return fig, axes


def _per_channel_plot(figure_cls, x, real_curves, fake_curves, names, xlabel, ylabel, log=False):
    fig, axes = _channel_grid(figure_cls, len(real_curves))
    for ax, name, r, f in zip(axes, names, real_curves, fake_curves):
        ax.plot(x, r, **REAL_STYLE)
        ax.plot(x, f, linestyle="--", **FAKE_STYLE)
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
    axes[0].legend()
    return fig


def _window_means(rng, x, max_points):
    idx = rng.permutation(len(x))[:max_points]
    return x[idx].mean(axis=-1)  # (n, L)


def raw_windows_plot(figure_cls, real, fake, names, rng, count=4):
    """Per channel, `count` random real windows beside `count` random generated ones."""
    fig, axes = _channel_grid(figure_cls, real.shape[-1])
    picks = rng.permutation(len(real))[:count], rng.permutation(len(fake))[:count]
    for k, (ax, name) in enumerate(zip(axes, names)):
        for i, (r, f) in enumerate(zip(real[picks[0], :, k], fake[picks[1], :, k])):
            for x, style, line in ((r, REAL_STYLE, "-"), (f, FAKE_STYLE, "--")):
                ax.plot(x, linestyle=line, alpha=0.8, color=style["color"],
                        label=style["label"] if i == 0 else None)  # one legend entry a set
        ax.set_title(name)
        ax.set_xlabel("t")
    axes[0].legend()
    return fig


def save_plots(real, fake, outdir, names=None, max_points=1000, seed=0):
    """Writes windows.png, acf.png, psd.png, tsne.png and kde.png into `outdir`; returns their
    paths.

    Args:
        real, fake: (N, L, K) windows in [0, 1].
        outdir: directory to write into (created if needed).
        names: optional K channel names for the per-channel titles.
        max_points: windows of each set used for t-SNE and the density.
        seed: fixes the subsampling and t-SNE.
    """
    real, fake = check_windows(real, fake)
    figure_cls = _require("matplotlib.figure").Figure
    manifold = _require("sklearn.manifold")

    channels = real.shape[-1]
    names = list(names) if names is not None else [f"channel {k}" for k in range(channels)]
    if len(names) != channels:
        raise ValueError(f"got {len(names)} channel names for {channels} channels.")
    os.makedirs(outdir, exist_ok=True)
    length = real.shape[1]
    bins = np.arange(1, length // 2 + 1)  # bin 0 is the removed window mean
    figures = {
        "windows.png": raw_windows_plot(figure_cls, real, fake, names,
                                        np.random.default_rng(seed)),
        "acf.png": _per_channel_plot(figure_cls, np.arange(length), autocorrelation(real),
                                     autocorrelation(fake), names, "lag", "autocorrelation"),
        "psd.png": _per_channel_plot(figure_cls, bins, mean_psd(real)[:, 1:], mean_psd(fake)[:, 1:],
                                     names, "frequency (cycles per window)", "power", log=True),
    }

    rng = np.random.default_rng(seed)
    real_means = _window_means(rng, real, max_points)  # (n_r, L)
    fake_means = _window_means(rng, fake, max_points)  # (n_f, L)
    both = np.concatenate([real_means, fake_means])
    perplexity = min(40.0, (len(both) - 1) / 3.0)
    embedded = manifold.TSNE(n_components=2, perplexity=perplexity, max_iter=300,
                             random_state=seed).fit_transform(both)
    fig = figure_cls(figsize=(5, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.scatter(*embedded[: len(real_means)].T, alpha=0.2, **REAL_STYLE)
    ax.scatter(*embedded[len(real_means):].T, alpha=0.2, **FAKE_STYLE)
    ax.set_title("t-SNE of window means over channels")
    ax.legend()
    figures["tsne.png"] = fig

    values_real, values_fake = real_means.ravel(), fake_means.ravel()
    grid = np.linspace(min(values_real.min(), values_fake.min()),
                       max(values_real.max(), values_fake.max()), 256)
    fig = figure_cls(figsize=(5, 4), layout="constrained")
    ax = fig.subplots()
    for values, style, line in ((values_real, REAL_STYLE, "-"), (values_fake, FAKE_STYLE, "--")):
        if np.ptp(values) > 0:  # a constant set has no density to estimate
            ax.plot(grid, scipy.stats.gaussian_kde(values)(grid), linestyle=line, **style)
    ax.set_xlabel("value (mean over channels)")
    ax.set_ylabel("density estimate")
    ax.legend()
    figures["kde.png"] = fig

    paths = []
    for filename, fig in figures.items():
        path = os.path.join(outdir, filename)
        fig.savefig(path, dpi=100)
        paths.append(path)
    return paths


def save_loss_curve(metric_log, outdir):
    """Writes loss.png into `outdir`: the training loss (the mean over each logging interval) and
    the validation loss against the step, read from a run's metrics.jsonl. Returns its path."""
    figure_cls = _require("matplotlib.figure").Figure
    rows = [json.loads(line) for line in pathlib.Path(metric_log).read_text().splitlines() if line]
    fig = figure_cls(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    curves = (("loss", "training loss", dict(color="tab:blue")),
              ("val_loss", "validation loss", dict(color="tab:orange", marker="o")))
    for key, label, style in curves:
        steps = [r["step"] for r in rows if key in r]
        ax.plot(steps, [r[key] for r in rows if key in r], label=label, **style)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, "loss.png")
    fig.savefig(path, dpi=100)
    return path
