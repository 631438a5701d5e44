"""Class labels: their encoding and storage, label dropout, and classifier-free guidance.

Encoding. A data set's labels (integers or strings, one per window) become class indices
0 .. C-1 in the sorted order of their names (numeric order when every name is a number), and the
names are kept: in the checkpoint's host state (`saved_model.HostState.class_names`), and in
workdir/labels.json beside config.json (`save_labels`, written atomically), so that sampling
and the samples' label column speak the data's own names. Index C is the "no class" token.

Training. A share `config.model.label_dropout` of the windows of every batch trains with the
"no class" token instead of its label (`drop_labels`), so the one network learns the
conditional and the unconditional model at once (Ho & Salimans, 2022). The dropout draws its own
key (`DROPOUT_STREAM` folded into the step's key), so the diffusion noise of a step is the same
with and without labels, and an unlabelled run draws nothing more.

Sampling. `guided_denoiser` wraps a network `(z, logsnr, labels) -> output` into the
`denoise_fn(z, logsnr)` that every sampler takes: out_w = out_uncond + w (out_cond - out_uncond),
with one network call on the concatenated conditional and unconditional batches. The network's
output is the velocity v and eps = sigma z + alpha v is affine in it at a given z, so the same
combination of eps (or of x0) is the combination of v: it does not matter which the caller
wraps. w = 0 is the unconditional model and w = 1 the conditional one, both exactly (one call);
w > 1 pushes the samples towards what tells the class apart. `requested_labels` turns
`config.sample.classes` into one label per sample.
"""

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from stdiff_jax import workdir as workdir_lib
from stdiff_jax.errors import UserError

LABELS_FILE = "labels.json"
DROPOUT_STREAM = 0x1ABE1  # Folded into a step's key for the label dropout's own draw.
PROTOCOL = "protocol"


# ------------------------------------------------------------------------------------------------
# Encoding and storage.
# ------------------------------------------------------------------------------------------------
def _is_number(name):
    try:
        float(name)
        return True
    except ValueError:
        return False


def encode_labels(values):
    """Per-window label values (N,) (ints or strings) -> (indices (N,) int32, class names).

    The names are the distinct values as strings, sorted numerically when all are numbers (so
    "2" < "10") and as text otherwise; index i is names[i].
    """
    names = np.asarray([str(v).strip() for v in np.asarray(values).ravel()])
    distinct = sorted(set(names.tolist()),
                      key=float if all(map(_is_number, set(names.tolist()))) else str)
    if "" in distinct:
        raise UserError("A label is empty; every window needs a class.")
    lookup = {name: i for i, name in enumerate(distinct)}
    return np.asarray([lookup[n] for n in names], np.int32), tuple(distinct)


def class_counts(labels, num_classes):
    """Windows per class (C,) of class indices (N,)."""
    return np.bincount(np.asarray(labels), minlength=num_classes)[:num_classes]


def check_class_sizes(labels, class_names, batch_size, where):
    """A UserError when a class has fewer windows than one training batch (or none at all).

    Such a class is seen in too few batches for its embedding to learn it, and the per-class
    scores have nothing to hold out; the message names the classes and the ways out.
    """
    counts = class_counts(labels, len(class_names))
    small = [f"{name!r} ({count})" for name, count in zip(class_names, counts)
             if count < batch_size]
    if small:
        raise UserError(f"{where}: the class(es) {', '.join(small)} have fewer windows than one "
                        f"training batch ({batch_size}). Lower config.train.batch_size to at most "
                        f"{counts.min()}, or merge or remove the rare classes' rows.")


def save_labels(workdir, class_names, counts):
    """Writes workdir/labels.json (class names in index order, windows per class) whole
    (`workdir.write_json`), so a reader never sees half a file."""
    workdir_lib.write_json(workdir_lib.as_path(workdir) / LABELS_FILE, {
        "classes": list(class_names), "counts": [int(c) for c in counts],
        "no_class_index": len(class_names)})


def indices_of(names, class_names, what="label"):
    """Class names (N,) -> indices (N,) int32 of the model's classes; a UserError for others."""
    lookup = {name: i for i, name in enumerate(class_names)}
    names = [str(n).strip() for n in np.atleast_1d(np.asarray(names, dtype=object))]
    unknown = sorted(set(names) - set(lookup))
    if unknown:
        raise UserError(f"Unknown class {', '.join(map(repr, unknown))} ({what}): the model "
                        f"knows the classes {list(class_names)}.")
    return np.asarray([lookup[n] for n in names], np.int32)


# ------------------------------------------------------------------------------------------------
# Training: batches with labels, and label dropout.
# ------------------------------------------------------------------------------------------------
def classes_of(dataset, batch_size):
    """(class names, windows per class) of a labelled data set, checked to train
    (`check_class_sizes`); None for a data set without labels."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        return None
    check_class_sizes(labels, dataset.class_names, batch_size, dataset.name)
    return tuple(dataset.class_names), tuple(int(c) for c in class_counts(
        labels, len(dataset.class_names)))


def num_classes_of(dataset):
    """The classes of a labelled data set; 0 for one without labels."""
    return 0 if getattr(dataset, "labels", None) is None else len(dataset.class_names)


def training_arrays(dataset):
    """What training batches are cut from: the windows (N, L, K), or (windows, labels (N,))."""
    labels = getattr(dataset, "labels", None)
    return dataset.windows if labels is None else (dataset.windows, labels)


def host_fields(classes):
    """The `saved_model.HostState` fields of `classes_of`'s result."""
    if classes is None:
        return {}
    return {"class_names": classes[0], "class_counts": classes[1]}


def split_batch(batch):
    """(series, labels) of a training batch: a (series, labels) pair, or series alone (no
    labels: None)."""
    return batch if isinstance(batch, tuple) else (batch, None)


def drop_labels(labels, key, rate, null_label):
    """labels (B,) with each replaced by the "no class" token `null_label` with probability
    `rate`, independently."""
    dropped = jax.random.uniform(key, labels.shape) < rate
    return jnp.where(dropped, null_label, labels)


def conditioned(apply_fn, labels, key=None, rate=0.0, null_label=None):
    """apply_fn(params, z, logsnr) of the loss, calling apply_fn(params, z, logsnr, labels) with
    the labels (after dropout at `rate` with key `key`, when rate > 0); apply_fn itself when
    labels is None."""
    if labels is None:
        return apply_fn
    if rate > 0:
        labels = drop_labels(labels, jax.random.fold_in(key, DROPOUT_STREAM), rate, null_label)
    return lambda params, z, logsnr: apply_fn(params, z, logsnr, labels)


# ------------------------------------------------------------------------------------------------
# Sampling: classifier-free guidance and the labels of the samples.
# ------------------------------------------------------------------------------------------------
def check_guidance(guidance):
    if not (np.isfinite(guidance) and guidance >= 0):
        raise UserError(f"The guidance scale config.sample.guidance must be >= 0 (0: "
                        f"unconditional, 1: conditional, > 1: guided), got {guidance}.")
    return float(guidance)


def guided_denoiser(network, labels, guidance, null_label):
    """denoise(z, logsnr) -> out_uncond + w (out_cond - out_uncond) for the samples' labels.

    network(z, logsnr, labels) -> output (B, ...), any output affine in the network's (eps, v or
    x0 at the given z); labels (B,) int; guidance w: a Python float (static: w = 0 and w = 1
    call the network once, on the unconditional or the conditional batch, and return its
    output unchanged). Otherwise one call on both batches, concatenated.
    """
    w = check_guidance(guidance)
    null = jnp.full_like(labels, null_label)
    if w == 0.0:
        return lambda z, logsnr: network(z, logsnr, null)
    if w == 1.0:
        return lambda z, logsnr: network(z, logsnr, labels)

    def denoise(z, logsnr):
        b = z.shape[0]
        both = network(jnp.concatenate([z, z]), jnp.concatenate([logsnr, logsnr]),
                       jnp.concatenate([labels, null]))  # (2B, ...)
        cond, uncond = both[:b], both[b:]
        return uncond + w * (cond - uncond)

    return denoise


def _proportional(counts, total):
    """`total` split over classes in proportion to `counts` (largest remainders, ties to the
    lower index)."""
    counts = np.asarray(counts, np.float64)
    exact = total * counts / counts.sum()
    out = np.floor(exact).astype(int)
    order = np.argsort(-(exact - out), kind="stable")
    out[order[:total - out.sum()]] += 1
    return out


def requested_counts(spec, class_names, data_counts, num_samples=0):
    """Samples per class (C,) int of a `config.sample.classes` string.

    spec: "protocol" (or ""): as many per class as the training data has windows, or, with
      num_samples > 0, num_samples split in the data's class proportions; "NAME:COUNT,..."
      (class names as in the data, e.g. "Walking:500,Running:100"): those counts, whatever
      num_samples.
    """
    spec = (spec or PROTOCOL).strip()
    if spec == PROTOCOL:
        counts = np.asarray(data_counts, int)
        return _proportional(counts, num_samples) if num_samples else counts
    counts = np.zeros(len(class_names), int)
    for item in spec.split(","):
        name, sep, count = item.strip().rpartition(":")
        if not sep or not count.strip().isdigit() or int(count) < 1:
            raise UserError(f"config.sample.classes={spec!r}: {item.strip()!r} is not NAME:COUNT "
                            f"with a positive COUNT; write e.g. "
                            f"'{class_names[0]}:500,{class_names[-1]}:100', or 'protocol'.")
        counts[indices_of([name], class_names, "config.sample.classes")[0]] += int(count)
    if num_samples and num_samples != counts.sum():
        logging.info("config.sample.classes=%r asks for %d samples: config.sample.num_samples=%d "
                     "does not apply.", spec, counts.sum(), num_samples)
    return counts


def requested_labels(spec, class_names, data_counts, num_samples=0):
    """One class index per sample (N,) int32, class by class (`requested_counts`)."""
    counts = requested_counts(spec, class_names, data_counts, num_samples)
    return np.repeat(np.arange(len(class_names), dtype=np.int32), counts)


def labels_for(labels, sample_config, host):
    """The labels (N,) int32 of the samples of a checkpoint's model (`saved_model.HostState`):
    `labels` given as class names or indices, else those of `config.sample.classes`
    (`requested_labels`); None for a model without classes (nothing may ask for classes)."""
    spec = sample_config.get("classes", "")
    if not host.class_names:
        if spec or labels is not None:
            raise UserError(f"Samples of given classes were asked for (config.sample.classes="
                            f"{spec!r}, labels={labels is not None}), but the model was trained "
                            f"without labels.")
        return None
    check_guidance(sample_config.get("guidance", 1.0))
    if labels is None:
        return requested_labels(spec, host.class_names, host.class_counts,
                                sample_config.num_samples)
    labels = np.atleast_1d(np.asarray(labels))
    if labels.dtype.kind in "iu":
        if labels.min() < 0 or labels.max() >= len(host.class_names):
            raise UserError(f"Class indices must lie in [0, {len(host.class_names)}) (the "
                            f"model's classes {list(host.class_names)}), got {labels.min()} to "
                            f"{labels.max()}.")
        return labels.astype(np.int32)
    return indices_of(labels, host.class_names)


def condition_labels(settings, host, chunk_size):
    """The extra arguments of a conditional sampler's chunk (`conditional.sample_windows`): for
    a model with classes, (labels (chunk_size,),) of the class settings.label (the "no class"
    token for ""); for one without, () (settings.label must be "")."""
    label = settings.get("label", "")
    if not host.class_names:
        if label:
            raise UserError(f"config.condition.label={label!r}, but the model was trained "
                            f"without labels; leave it empty.")
        return ()
    check_guidance(settings.get("guidance", 1.0))
    index = indices_of([label], host.class_names, "config.condition.label")[0] if label else (
        len(host.class_names))
    return (np.full(chunk_size, index, np.int32),)
