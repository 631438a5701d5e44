"""Class labels: encoding, label dropout, classifier-free guidance, labelled data sets (CSV label
column, npy labels, class_sines, the .ts parser and the aeon wheel), the class metrics, and an
unlabelled run that is unchanged to the last digit."""

import dataclasses
import hashlib
import json
import pathlib
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base, class_sines, sines
from stdiff_jax import generate, labels, mesh as mesh_lib, modes, sampling, saved_model, train
from stdiff_jax.data import labelled, load_dataset, tables
from stdiff_jax.data.download import ChecksumError
from stdiff_jax.errors import UserError
from stdiff_jax.schedule import Schedule
from stdiff_jax.metrics import classes
from stdiff_jax.models import create_model
from test_main import run_main

TINY = dict(depth=1, hidden=16, heads=2, mlp_ratio=2.0, patch_freq=2)
T, F, K = 4, 5, 2


def tiny_model(num_classes):
    return create_model(TINY, T, F, K, num_classes=num_classes)


def inputs(b=6, seed=1):
    rng = np.random.default_rng(seed)
    z = jnp.asarray(rng.normal(size=(b, T, F, K, 3)), jnp.float32)
    logsnr = jnp.asarray(rng.uniform(-10, 10, size=(b,)), jnp.float32)
    return z, logsnr


def perturbed(params, seed=2):
    """Random non-zero parameters: at init the adaLN-Zero output is zero for every class."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(treedef, [p + 0.3 * jax.random.normal(k, p.shape)
                                        for p, k in zip(leaves, keys)])


# ------------------------------------------------------------------------------------------------
# The network, label dropout and guidance.
# ------------------------------------------------------------------------------------------------
def test_class_embedding_adds_only_its_table_and_no_classes_adds_nothing():
    z, logsnr = inputs()
    plain = tiny_model(0).init(jax.random.key(0), z, logsnr)["params"]
    labelled_params = tiny_model(3).init(jax.random.key(0), z, logsnr)["params"]
    assert set(labelled_params) - set(plain) == {"y_embedder"}
    assert labelled_params["y_embedder"]["embedding"]["embedding"].shape == (4, TINY["hidden"])
    assert "y_embedder" not in plain
    # Without classes, labels are ignored.
    model, params = tiny_model(0), perturbed(plain)
    np.testing.assert_array_equal(model.apply({"params": params}, z, logsnr),
                                  model.apply({"params": params}, z, logsnr, jnp.arange(6) % 3))


def test_labels_change_the_output_and_none_is_the_no_class_token():
    z, logsnr = inputs()
    model = tiny_model(3)
    params = perturbed(model.init(jax.random.key(0), z, logsnr)["params"])
    out = lambda y: model.apply({"params": params}, z, logsnr, y)
    assert not np.allclose(out(jnp.zeros(6, jnp.int32)), out(jnp.ones(6, jnp.int32)))
    np.testing.assert_array_equal(out(None), out(jnp.full(6, 3, jnp.int32)))
    with pytest.raises(ValueError, match="labels must be integers"):
        out(jnp.zeros(6))


def test_label_dropout_replaces_the_given_share_by_the_no_class_token():
    y = jnp.asarray(np.random.default_rng(0).integers(0, 3, 20_000), jnp.int32)
    key = jax.random.key(1)
    dropped = np.asarray(labels.drop_labels(y, key, 0.1, 3))
    changed = dropped != np.asarray(y)
    assert set(np.unique(dropped[changed])) == {3}
    assert abs(changed.mean() - 0.1) < 0.01
    np.testing.assert_array_equal(labels.drop_labels(y, key, 0.0, 3), y)
    assert np.all(np.asarray(labels.drop_labels(y, key, 1.0, 3)) == 3)
    apply_fn = lambda params, z, logsnr, labels=None: labels
    assert labels.conditioned(apply_fn, None) is apply_fn  # no labels, nothing changes
    seen = labels.conditioned(apply_fn, y, jax.random.key(2), 0.5, 3)(None, None, None)
    assert 0.45 < np.mean(np.asarray(seen) == 3) < 0.55


def test_guidance_zero_and_one_are_exactly_the_unconditional_and_conditional_outputs():
    z, logsnr = inputs()
    model = tiny_model(3)
    params = perturbed(model.init(jax.random.key(0), z, logsnr)["params"])
    apply_fn = saved_model.apply_fn_of(model)
    network = lambda z, logsnr, y: apply_fn(params, z, logsnr, y)
    y = jnp.asarray([0, 1, 2, 0, 1, 2], jnp.int32)
    cond = network(z, logsnr, y)
    uncond = network(z, logsnr, jnp.full(6, 3, jnp.int32))
    guided = lambda w: labels.guided_denoiser(network, y, w, 3)(z, logsnr)
    np.testing.assert_array_equal(guided(0.0), uncond)
    np.testing.assert_array_equal(guided(1.0), cond)
    # w > 1: the combination, the two calls batched; linear in w about the unconditional output.
    # float32: the batched call's sums may round differently by the CPU's instruction set (an
    # Intel Xeon: 2.8e-5 off on one value of 720); a wrong combination is off by O(0.1).
    np.testing.assert_allclose(guided(3.0), uncond + 3.0 * (cond - uncond), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(guided(2.0) - guided(1.5), 0.5 * (cond - uncond), atol=1e-4)
    with pytest.raises(UserError, match="guidance"):
        labels.guided_denoiser(network, y, -1.0, 3)


def test_guided_sampling_runs_in_every_sampler_and_matches_a_guided_denoiser():
    """Chunked generation with labels equals `sampling.sample` of the wrapped denoiser."""
    from stdiff_jax import sampling

    z, logsnr = inputs()
    model = tiny_model(3)
    params = perturbed(model.init(jax.random.key(0), z, logsnr)["params"])
    apply_fn = saved_model.apply_fn_of(model)
    y = jnp.asarray([2, 0, 1, 2], jnp.int32)
    denoise = labels.guided_denoiser(lambda z, l, y: apply_fn(params, z, l, y), y, 2.0, 3)
    for method in sampling.METHODS:
        out = sampling.sample(denoise, (4, T, F, K, 3), jax.random.key(3), method=method,
                              num_steps=3, eta=0.0, schedule=Schedule(), grid="logsnr",
                              clip_x0=None)
        assert out.shape == (4, T, F, K, 3) and np.all(np.isfinite(out))


# ------------------------------------------------------------------------------------------------
# Encoding and sample counts.
# ------------------------------------------------------------------------------------------------
def test_encoding_sorts_numbers_numerically_and_names_as_text():
    idx, names = labels.encode_labels(["10", "2", "2", "1"])
    assert names == ("1", "2", "10") and idx.tolist() == [2, 1, 1, 0]
    idx, names = labels.encode_labels(np.asarray(["walk", "run", "walk"]))
    assert names == ("run", "walk") and idx.tolist() == [1, 0, 1]


def test_requested_counts_protocol_proportions_and_explicit():
    names, counts = ("a", "b", "c"), (50, 30, 20)
    assert labels.requested_counts("protocol", names, counts).tolist() == [50, 30, 20]
    assert labels.requested_counts("", names, counts, 10).tolist() == [5, 3, 2]
    assert labels.requested_counts("", names, counts, 7).sum() == 7
    assert labels.requested_counts("c:4, a:1", names, counts).tolist() == [1, 0, 4]
    assert labels.requested_labels("c:2,a:1", names, counts).tolist() == [0, 2, 2]
    with pytest.raises(UserError, match=r"Unknown class 'd'.*\['a', 'b', 'c'\]"):
        labels.requested_counts("d:5", names, counts)
    with pytest.raises(UserError, match="NAME:COUNT"):
        labels.requested_counts("a=5", names, counts)
    assert labels.requested_counts("a:5", names, counts, 3).tolist() == [5, 0, 0]  # counts win


def test_prior_components_follow_the_smallest_class_with_a_prior_per_class():
    unit, y = labelled.class_sine_windows(counts=(1000, 400, 250))
    ds = labelled.labelled_dataset("three", unit, ["a", "b", "c"], y, 24)
    config = class_sines.get_config("smoke")
    config.model.prior_components = 30
    config.model.prior_per_class = False
    assert train.with_prior_components(config, ds).model.prior_components == 16  # 1,650 windows
    config.model.prior_per_class = True
    assert train.with_prior_components(config, ds).model.prior_components == 2  # class c: 250
    assert config.model.prior_components == 30  # the caller's config is left as it was


def test_a_class_with_fewer_windows_than_a_batch_is_a_clear_error(tmp_path):
    unit, y = labelled.class_sine_windows(counts=(40, 40, 10))
    ds = labelled.labelled_dataset("few", unit, ["a", "b"], y, 24)
    with pytest.raises(UserError, match=r"'2' \(10\) have fewer windows than one training batch "
                                        r"\(32\).*batch_size to at most 10"):
        labels.classes_of(ds, 32)
    config = class_sines.get_config("smoke")
    with pytest.raises(UserError, match="fewer windows than one training batch"):
        train.train_and_evaluate(config, tmp_path / "run", dataset=ds)
    assert not (tmp_path / "run").exists()  # stopped before writing anything


# ------------------------------------------------------------------------------------------------
# Labelled data.
# ------------------------------------------------------------------------------------------------
def test_label_column_round_trips_through_samples_csv(tmp_path):
    windows = np.random.default_rng(0).normal(size=(3, 4, 2)).astype(np.float32)
    names = np.asarray(["walk", "run, fast", "walk"])  # a comma: quoted
    path = tmp_path / "samples.csv"
    tables.write_windows_csv(path, windows, ["x", "y"], names)
    raw, columns = tables.read_csv(path, drop=("label",))
    assert columns == ["window", "t", "x", "y"]
    np.testing.assert_array_equal(raw[:, 2:].reshape(3, 4, 2).astype(np.float32), windows)
    np.testing.assert_array_equal(labelled.read_label_column(path, "label"),
                                  np.repeat(names, 4))


def test_csv_label_column_drops_windows_across_a_label_change(tmp_path):
    rows = 30
    x = np.stack([np.sin(np.arange(rows)), np.cos(np.arange(rows) / 3)], axis=1)
    y = ["up"] * 12 + ["down"] * 18
    path = tmp_path / "data.csv"
    path.write_text("date,a,state,b\n" + "".join(
        f"2024-01-{i + 1:02d},{x[i, 0]},{y[i]},{x[i, 1]}\n" for i in range(rows)))
    config = base.make_config(f"csv:{path}", "smoke")
    with config.unlocked():
        config.data.update(seq_len=5, label_column="state")
    ds = train.dataset_of(config.data)
    # 26 windows of 5 rows; the 4 starting at rows 8..11 cross the change at row 12.
    assert len(ds) == 22 and ds.class_names == ("down", "up")
    assert ds.labels.tolist() == [1] * 8 + [0] * 14
    assert ds.column_names == ("a", "b")
    np.testing.assert_allclose(ds.to_raw(ds.windows[8]), x[12:17], atol=1e-5)


def test_label_column_with_a_gap_or_missing_is_a_clear_error(tmp_path):
    path = tmp_path / "gap.csv"
    path.write_text("a,label\n1,x\n2,\n3,y\n")
    with pytest.raises(UserError, match=r"'label' is empty at data row 1 .*file line 3"):
        labelled.load_labelled(f"csv:{path}", 2, label_column="label")
    with pytest.raises(UserError, match="no column 'class'"):
        labelled.load_labelled(f"csv:{path}", 2, label_column="class")
    with pytest.raises(UserError, match="label_column"):
        labelled.load_labelled(f"csv:{path}", 2)


def test_npy_windows_with_a_labels_file(tmp_path):
    windows = np.random.default_rng(0).normal(size=(6, 8, 2))
    np.save(tmp_path / "w.npy", windows)
    np.save(tmp_path / "y.npy", np.asarray(["b", "a", "b", "b", "a", "a"]))
    ds = labelled.load_labelled(f"npy:{tmp_path / 'w.npy'}", 8, labels_path=str(tmp_path / "y.npy"))
    assert ds.class_names == ("a", "b") and ds.labels.tolist() == [1, 0, 1, 1, 0, 0]
    np.save(tmp_path / "short.npy", np.zeros(5, int))
    with pytest.raises(UserError, match="5 labels for 6 windows"):
        labelled.load_labelled(f"npy:{tmp_path / 'w.npy'}", 8,
                               labels_path=str(tmp_path / "short.npy"))
    np.save(tmp_path / "nan.npy", np.asarray([0, 1, np.nan, 0, 1, 1]))
    with pytest.raises(UserError, match="whole numbers without NaN"):
        labelled.load_labelled(f"npy:{tmp_path / 'w.npy'}", 8,
                               labels_path=str(tmp_path / "nan.npy"))


def test_labelled_configs():
    from configs import basic_motions, italy_power, japanese_vowels

    for module, name, batch in ((italy_power, "ucr:ItalyPowerDemand", 32),
                                (japanese_vowels, "ucr:JapaneseVowels", 24),
                                (basic_motions, "ucr:BasicMotions", 10)):
        config = module.get_config("cpu")
        assert (config.data.name, config.train.batch_size, config.data.val_fraction) == (
            name, batch, 0.0)
        assert labelled.wants_labels(config.data)
        # A Gaussian a class (classes of 10-34 windows), sampled as class_sines is.
        assert (config.model.prior_per_class, config.model.prior_components) == (True, 1)
        assert sampling.resolve(config.sample.method, config.sample.num_steps, True) == (
            "ancestral", 100)
    config = class_sines.get_config("cpu")
    assert labelled.wants_labels(config.data) and config.sample.guidance == 2.0
    assert (config.model.prior_per_class, config.model.prior_components) == (True, 6)
    assert sampling.resolve(config.sample.method, config.sample.num_steps, True) == (
        "ancestral", 100)
    assert not labelled.wants_labels(sines.get_config("cpu").data)


def test_class_sines_classes_have_the_frequency_bands_they_claim():
    ds = labelled.class_sines_dataset(24)
    assert labels.class_counts(ds.labels, 3).tolist() == list(labelled.CLASS_SINES_COUNTS)
    assert ds.windows.shape == (3000, 24, 2) and ds.test_windows.shape == (3000, 24, 2)
    bands = np.asarray(labelled.CLASS_BANDS)
    assert np.all(bands[:-1, 1] < bands[1:, 0])  # disjoint
    for windows, y in ((ds.unit_windows, ds.labels), ((ds.test_windows + 1) / 2, ds.test_labels)):
        freq = labelled.estimate_frequencies(windows)
        np.testing.assert_array_equal(labelled.band_of(freq), y)
        np.testing.assert_array_equal(labelled.nearest_band(freq), y)
    # The estimator itself: an exact sine's frequency, to the grid step.
    t = np.arange(24)
    sine = (np.sin(0.73 * t + 1.0)[None, :, None] + 1) / 2
    assert abs(labelled.estimate_frequencies(sine)[0, 0] - 0.73) <= 0.002


TS_UNIVARIATE = """# a comment
@problemName Toy
@timeStamps false
@missing false
@univariate true
@equalLength true
@seriesLength 4
@classLabel true 1 2
@data
0.5,1.0,1.5,2.0:1
-1,0,1,2:2
3,3,2,2:1
"""
TS_MULTIVARIATE = """@problemName Toy2
@timeStamps false
@univariate false
@dimensions 2
@equalLength false
@classLabel true run walk
@data
1,2,3:4,5,6:walk
1,2,3,4,5:0,0,0,0,0:run
"""


def test_ts_parser_reads_exact_files_and_refuses_others():
    series, y, names = labelled.parse_ts(TS_UNIVARIATE, "toy.ts")
    assert names == ("1", "2") and y == ["1", "2", "1"]
    np.testing.assert_array_equal(series[1][:, 0], [-1, 0, 1, 2])
    series, y, names = labelled.parse_ts(TS_MULTIVARIATE, "toy2.ts")
    assert [s.shape for s in series] == [(3, 2), (5, 2)] and y == ["walk", "run"]
    np.testing.assert_array_equal(series[0], [[1, 4], [2, 5], [3, 6]])
    bad = {"missing": TS_UNIVARIATE.replace("-1,0,1,2", "-1,?,1,2"),
           "@classLabel": TS_UNIVARIATE.replace(":2\n", ":3\n"),
           "time-stamped": TS_UNIVARIATE.replace("@timeStamps false", "@timeStamps true"),
           "lengths": TS_UNIVARIATE.replace("3,3,2,2", "3,3,2"),
           "no .ts header tag": TS_UNIVARIATE.replace("@missing false", "@missingg false"),
           "dimension": TS_MULTIVARIATE.replace("4,5,6:walk", "walk")}
    for message, text in bad.items():
        with pytest.raises(UserError, match=message):
            labelled.parse_ts(text, "bad.ts")
    # Variable lengths: each series is resampled linearly to seq_len; seq_len points stay exact.
    np.testing.assert_allclose(labelled.resample(series[1][:, :1] * 0 + np.arange(5.0)[:, None],
                                                 3)[:, 0], [0, 2, 4])
    assert labelled.resample(series[0], 3) is series[0]


def fake_wheel(path):
    with zipfile.ZipFile(path, "w") as wheel:
        for split in ("TRAIN", "TEST"):
            wheel.writestr(f"{labelled.AEON_DATA}/Toy/Toy_{split}.ts", TS_UNIVARIATE)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_ucr_sets_come_from_the_checked_aeon_wheel(tmp_path, monkeypatch):
    source = tmp_path / "source.whl"
    digest = fake_wheel(source)
    calls = []

    def pip_download(requirement, directory):
        calls.append(requirement)
        (pathlib.Path(directory) / labelled.AEON_WHEEL).write_bytes(source.read_bytes())

    monkeypatch.setattr(labelled, "_pip_download", pip_download)
    data = tmp_path / "data"
    monkeypatch.setattr(labelled, "AEON_WHEEL_SHA256", "0" * 64)
    with pytest.raises(ChecksumError, match="expected 0000"):
        load_dataset("ucr:Toy", 4, data)
    assert not (data / labelled.AEON_WHEEL).exists() and not (data / "ucr").exists()
    monkeypatch.setattr(labelled, "AEON_WHEEL_SHA256", digest)
    ds = load_dataset("ucr:Toy", 4, data)
    assert calls == [f"aeon=={labelled.AEON_VERSION}"] * 2
    assert (data / "ucr" / "Toy_TRAIN.ts").read_text() == TS_UNIVARIATE
    assert ds.windows.shape == (3, 4, 1) and ds.test_windows.shape == (3, 4, 1)
    assert ds.labels.tolist() == [0, 1, 0] and ds.test_labels.tolist() == [0, 1, 0]
    np.testing.assert_allclose(ds.to_raw(ds.windows[0])[:, 0], [0.5, 1, 1.5, 2], atol=1e-6)
    assert len(load_dataset("ucr:Toy", 7, data).windows[0]) == 7  # resampled, files cached
    assert len(calls) == 2
    with pytest.raises(UserError, match="neither in .* nor in the aeon"):
        load_dataset("ucr:Nothing", 4, data)


# ------------------------------------------------------------------------------------------------
# Metrics.
# ------------------------------------------------------------------------------------------------
def test_class_metrics_see_right_and_wrong_labels():
    unit, y = labelled.class_sine_windows(counts=(120, 120, 120))
    test, test_y = labelled.class_sine_windows(counts=(40, 40, 40), seed=3)
    fake, fake_y = labelled.class_sine_windows(counts=(60, 60, 60), seed=4)
    opts = {"classifier": {"iterations": 300}}
    right = classes.evaluate_classes(unit, y, fake, fake_y, ("0", "1", "2"), real_test=test,
                                     real_test_labels=test_y, repeats=1,
                                     metrics=("cas", "class_fidelity"), options=opts)
    wrong = classes.evaluate_classes(unit, y, fake, (fake_y + 1) % 3, ("0", "1", "2"),
                                     real_test=test, real_test_labels=test_y, repeats=1,
                                     metrics=("cas", "class_fidelity"), options=opts)
    assert right["trtr"]["mean"] > 0.9 and right["cas"]["mean"] > 0.9
    assert right["class_fidelity"]["mean"] > 0.9
    assert wrong["class_fidelity"]["mean"] < 0.1 and wrong["cas"]["mean"] < 0.1
    assert wrong["trtr"] == right["trtr"]  # the real classifier does not see the fake labels


# ------------------------------------------------------------------------------------------------
# Runs.
# ------------------------------------------------------------------------------------------------
# Computed by main's code before labels existed, with `unlabelled_run` below on XLA:CPU: the
# sha256 of the parameters after 4 steps and the logged losses of those steps (commit ebe980a),
# and the sha256 of 12 series sampled from that checkpoint (commit 849e783), on the project's AMD
# EPYC VM. XLA:CPU's code differs in the last bits between instruction sets: on an Intel Xeon
# (2026-12-05, session 22) the same run logs MAIN_LOSSES to the last digit but its parameters and
# samples hash to the second pair, which guards the run there from then on. On an AVX2-only AMD
# EPYC (CPU family 23 model 1; 2026-12-05, session 28, the same digests at commit 5da89d0 as
# after it) the losses and the samples are the first pair's and the parameters hash to the third.
MAIN_DIGESTS = (  # (parameters, samples)
    ("d3fcd8e55c2863d6e6847cf496326a3813f3a35f0f6207f4568088e32fb638fd",
     "99018e6ee9f04bf1abcd3e8c8a8e3eda6f4f2e87f17438200de27f0043c178d7"),
    ("49bd67b8ff2260ffd83103ec795c8080c1baaec83d927787d557ddc68e0758c0",
     "cd87a2857f316a4a73200a5f17514d26fee947223a6f47e6bc6affecd8167c98"),
    ("2ee265581b3c56ca3401628d10c917a4c5faf5a3b24754fbae44023d0b729c51",
     "99018e6ee9f04bf1abcd3e8c8a8e3eda6f4f2e87f17438200de27f0043c178d7"),
)
MAIN_LOSSES = [0.932236909866333, 0.891853392124176, 0.9318042993545532, 1.019060730934143]
MAIN_VAL_LOSSES = [1.0242810249328613, 1.0239667892456055]


def unlabelled_run(workdir):
    config = sines.get_config("smoke")
    config.model.prior_rank = 0  # main's network when the digests were computed
    config.train.update(batch_size=16, num_steps=4, warmup_steps=1, log_every=1, eval_every=2,
                        checkpoint_every=2)
    config.data.val_fraction = 0.1
    dataset = load_dataset("sines", 24)
    dataset = dataclasses.replace(dataset, windows=dataset.windows[:160])
    train.train_and_evaluate(config, workdir, dataset=dataset)
    state = train.restore_train_state(config, workdir, mesh_lib.make_mesh(), 4)[0]
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(state.params):
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(np.asarray(leaf).tobytes())
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    config.sample.update(num_steps=3, chunk_size=8)
    mesh = mesh_lib.make_mesh()
    tm = saved_model.load(config, workdir, mesh)
    sampler = generate.compile_sampler(config, mesh, tm.model, tm.host, 8)
    series = generate.generate_series(sampler, tm.params, 12, 8, jax.random.PRNGKey(0),
                                      progress=None)
    samples = hashlib.sha256(np.asarray(series, np.float32).tobytes()).hexdigest()
    return digest.hexdigest(), rows, samples


@pytest.mark.slow
def test_an_unlabelled_run_is_unchanged_to_the_last_digit(tmp_path):
    digest, rows, samples = unlabelled_run(tmp_path)
    assert [r["loss"] for r in rows if "loss" in r] == MAIN_LOSSES
    assert [r["val_loss"] for r in rows if "val_loss" in r] == MAIN_VAL_LOSSES
    assert (digest, samples) in MAIN_DIGESTS
    assert not (tmp_path / labels.LABELS_FILE).exists()


@pytest.mark.slow
def test_labelled_smoke_run_trains_and_samples_the_asked_classes(tmp_path):
    workdir = tmp_path / "run"
    overrides = ["--config.train.num_steps=4", "--config.train.warmup_steps=1",
                 "--config.train.eval_every=2",
                 "--config.train.checkpoint_every=2", "--config.sample.num_steps=2"]
    result = run_main("--config=configs/class_sines.py:smoke", f"--workdir={workdir}",
                      "--config.sample.classes=2:5,0:3", "--config.sample.guidance=2", *overrides)
    assert result.returncode == 0, result.stderr  # trained, sampled and scored
    record = json.loads((workdir / labels.LABELS_FILE).read_text())
    assert record["classes"] == ["0", "1", "2"] and record["counts"] == [1500, 900, 600]
    assert "Generating 8 series with ancestral, 2 steps" in result.stderr  # "auto" with classes
    assert np.load(workdir / modes.SAMPLES_LABELS).tolist() == [0] * 3 + [2] * 5
    per_row = labelled.read_label_column(workdir / modes.SAMPLES_CSV, "label")
    assert per_row.tolist() == ["0"] * 3 * 24 + ["2"] * 5 * 24
    # Scored: the memorisation check class by class against class_sines' test draw.
    check = json.loads((workdir / modes.METRICS).read_text())["memorisation"]
    assert list(check["per_class"]) == ["0", "2"] and check["per_class"]["2"]["num_generated"] == 5
    assert "memorisation  per class (median ratio, share closer): 0 " in result.stdout
    result = run_main("--config=configs/class_sines.py:smoke", f"--workdir={workdir}",
                      "--mode=sample", "--config.sample.classes=7:5", *overrides)
    assert result.returncode == 2 and "Unknown class '7'" in result.stderr
    # The Python API: names or indices, and a class-conditional imputation.
    config = class_sines.get_config("smoke")
    tm = saved_model.load(config, workdir)
    assert tm.model.num_prior_components == 3  # a prior per class by default: one Gaussian each
    unit, y = generate.sample_series(tm, ["1", "1"], guidance=0.0, num_steps=2, progress=None)
    assert unit.shape == (2, 24, 2) and y.tolist() == [1, 1]
    from stdiff_jax import conditional
    series = np.full((24, 2), np.nan)
    series[:12] = 0.5
    filled = conditional.impute(tm, series, num_samples=2, num_steps=2, label="2", guidance=2.0,
                                correction="projection", progress=None)
    assert filled.shape == (2, 24, 2) and np.all(filled[:, :12] == 0.5)
    with pytest.raises(UserError, match="Unknown class '9'"):
        conditional.impute(tm, series, num_samples=2, num_steps=2, label="9", progress=None)
