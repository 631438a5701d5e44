"""Scores of class-conditional generation, on labelled (N, L, K) windows in [0, 1].

- CAS, the classification accuracy score (Ravuri & Vinyals, 2019): a classifier trained on the
  generated windows with the classes they were asked for, tested on real held-out windows;
  against TRTR, the same classifier trained on the real training windows. CAS near TRTR means
  the generated classes carry what tells the real ones apart.
- Class fidelity: the share of generated windows that a classifier trained on real windows
  assigns to the class they were asked for.
- Per-class Context-FID and discriminative score: the benchmark's metrics
  (`stdiff_jax.metrics`) between the real and the generated windows of each class.
- The memorisation check class by class (`with_per_class`).

The classifier is the post-hoc GRU of the discriminative score (`gru.PostHocGRU`, TF1 GRUCell
semantics) with a softmax head, CLASSIFIER_HIDDEN units and Adam at gru.LEARNING_RATE for
ITERATIONS steps of BATCH_SIZE windows; the repeats train side by side in one program
(`scan_train`), one per seed.
"""

import functools

import jax
import numpy as np
import optax

from stdiff_jax.data.held_out import kept_test_windows
from stdiff_jax.metrics import gru, memorisation
from stdiff_jax.metrics.discriminative import discriminative_scores
from stdiff_jax.metrics.evaluate import summarize
from stdiff_jax.metrics.fid import context_fids
from stdiff_jax.metrics.inputs import check_windows
from stdiff_jax.metrics.scan_train import scan_train, stack_repeats, subset_batches

CLASSIFIER_HIDDEN = 32
ITERATIONS = 2000
BATCH_SIZE = 64
HOLD_OUT = 0.2  # Share of the real windows the classifiers are tested on when no test set is given.
CLASS_METRICS = ("cas", "class_fidelity", "context_fid", "discriminative")
PER_CLASS = {"context_fid": context_fids, "discriminative": discriminative_scores}


@functools.partial(jax.jit, static_argnames=("hidden", "num_classes"))
def train_classifiers(params, windows, labels, idx, test, *, hidden, num_classes):
    """Trains R GRU classifiers side by side (one per leading row of params and idx) with
    softmax cross-entropy and returns each one's logits (R, M, C) on the windows `test`.

    windows (N, L, K), labels (N,) int; idx (R, iterations, batch) indices of each step's batch;
    test (M, L, K), shared by every repeat.
    """
    model = gru.PostHocGRU(hidden, per_step=False, outputs=num_classes)

    def loss_fn(params, batch):
        logits = model.apply(params, windows[batch])  # (B, C)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels[batch]).mean()

    def train(params, idx):
        params, _, _ = scan_train(loss_fn, params, optax.adam(gru.LEARNING_RATE), idx)
        return model.apply(params, test)  # (M, C)

    return jax.vmap(train)(params, idx)


def classify(train, train_labels, test, num_classes, seeds, *, iterations=ITERATIONS,
             batch_size=BATCH_SIZE):
    """(R, M) classes predicted for `test` (M, L, K) by one classifier per seed, trained on
    `train` (N, L, K) with `train_labels` (N,)."""
    n, channels = len(train), train.shape[-1]
    batch = min(batch_size, n)

    def draws(seed):
        rng = np.random.default_rng(seed)
        return (gru.init_params(rng, channels, CLASSIFIER_HIDDEN, num_classes),
                subset_batches(rng, n, batch, iterations))

    params, idx = stack_repeats([draws(seed) for seed in seeds])
    logits = train_classifiers(params, np.asarray(train, np.float32),
                               np.asarray(train_labels, np.int32), idx,
                               np.asarray(test, np.float32), hidden=CLASSIFIER_HIDDEN,
                               num_classes=num_classes)
    return np.argmax(np.asarray(logits), axis=-1)


def _held_out(real, real_labels, seed):
    """(train, train labels, test, test labels): HOLD_OUT of the real windows, drawn by seed."""
    order = np.random.default_rng(seed).permutation(len(real))
    cut = len(real) - max(1, round(HOLD_OUT * len(real)))
    return real[order[:cut]], real_labels[order[:cut]], real[order[cut:]], real_labels[order[cut:]]


def classifier_scores(real, real_labels, fake, fake_labels, num_classes, seeds, real_test=None,
                      real_test_labels=None, **options):
    """{"cas", "trtr", "class_fidelity"}: lists of one score per seed (module docstring).

    real_test: real windows the classifiers are tested on; None holds out HOLD_OUT of `real`.
    options: `classify`'s iterations and batch_size.
    """
    if real_test is None:
        real, real_labels, real_test, real_test_labels = _held_out(real, real_labels, seeds[0])
    m = len(real_test)
    on_real = classify(real, real_labels, np.concatenate([real_test, fake]), num_classes, seeds,
                       **options)  # (R, M + N_fake)
    on_fake = classify(fake, fake_labels, real_test, num_classes, seeds, **options)  # (R, M)
    return {"cas": list(np.mean(on_fake == real_test_labels, axis=1)),
            "trtr": list(np.mean(on_real[:, :m] == real_test_labels, axis=1)),
            "class_fidelity": list(np.mean(on_real[:, m:] == fake_labels, axis=1))}


def per_class_scores(metric, real, real_labels, fake, fake_labels, class_names, seeds, **options):
    """{class name: [score per seed]} of `metric` ("context_fid" or "discriminative") between
    the real and the generated windows of each class that has generated windows."""
    out = {}
    for c, name in enumerate(class_names):
        if np.any(fake_labels == c):
            out[name] = PER_CLASS[metric](real[real_labels == c], fake[fake_labels == c], seeds,
                                          **options)
    return out


def evaluate_labelled(dataset, fake, fake_labels, eval_config):
    """`evaluate_classes` of generated windows against a `labelled.LabelledDataset` (its test
    windows, where it has them, test CAS and TRTR), with eval_config's class_metrics, repeats
    and seed."""
    test = dataset.test_windows
    return evaluate_classes(dataset.unit_windows, dataset.labels, fake, fake_labels,
                            dataset.class_names,
                            real_test=None if test is None else (test + 1) / 2,
                            real_test_labels=dataset.test_labels, repeats=eval_config.repeats,
                            seed=eval_config.seed,
                            metrics=tuple(eval_config.get("class_metrics", ())))


def with_per_class(check, dataset, fake, fake_labels, held_out, seed=0):
    """`check`, the memorisation check of generated windows (N, L, K) in [0, 1] against
    `held_out`, the `held_out_windows` of a `labelled.LabelledDataset` (its test windows), with
    `per_class` added where it is available (`memorisation.per_class_memorisation`)."""
    if check["available"]:
        check["per_class"] = memorisation.per_class_memorisation(
            dataset.unit_windows, fake, fake_labels, held_out,
            dataset.test_labels[kept_test_windows(dataset)], dataset.class_names, seed=seed)
    return check


def evaluate_classes(real, real_labels, fake, fake_labels, class_names, *, real_test=None,
                     real_test_labels=None, repeats=5, seed=0, metrics=CLASS_METRICS,
                     options=None):
    """The class-conditional scores, each repeated, as `metrics.evaluate` reports them.

    Args:
        real, real_labels: the real (training) windows (N, L, K) in [0, 1] and classes (N,).
        fake, fake_labels: generated windows and the classes they were asked for.
        class_names: C names, index order.
        real_test, real_test_labels: real held-out windows for CAS and TRTR (None: HOLD_OUT of
            real).
        repeats, seed: repeat r uses seed + r.
        metrics: names from CLASS_METRICS; "cas" also reports "trtr", "class_fidelity" is the
            real classifier's, per-class metrics are named "<metric>/<class>".
        options: {metric: keyword arguments}, e.g. fewer iterations for a quick look.

    Returns:
        {name: {"mean", "ci95", "values"}}.
    """
    real, fake = check_windows(real, fake)
    real_labels, fake_labels = np.asarray(real_labels), np.asarray(fake_labels)
    if real_test is not None:
        real_test = np.clip(real_test, 0.0, 1.0)  # held-out windows may leave the training range
    unknown = sorted(set(metrics) - set(CLASS_METRICS))
    if unknown:
        raise ValueError(f"unknown class metrics {unknown}; choose from {CLASS_METRICS}.")
    options, seeds = options or {}, [seed + r for r in range(repeats)]
    scores = {}
    if {"cas", "class_fidelity"} & set(metrics):
        classifier = classifier_scores(real, real_labels, fake, fake_labels, len(class_names),
                                       seeds, real_test, real_test_labels,
                                       **options.get("classifier", {}))
        wanted = {"cas": ("cas", "trtr"), "class_fidelity": ("class_fidelity",)}
        for name in (n for m in metrics if m in wanted for n in wanted[m]):
            scores[name] = classifier[name]
    for metric in (m for m in metrics if m in PER_CLASS):
        for name, values in per_class_scores(metric, real, real_labels, fake, fake_labels,
                                             class_names, seeds,
                                             **options.get(metric, {})).items():
            scores[f"{metric}/{name}"] = values
    return {name: summarize(values) for name, values in scores.items()}
