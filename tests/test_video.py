"""Series <-> video: exact inversion, the trend channel, normalisation and bias statistics."""

import jax.numpy as jnp
import numpy as np
import pytest

from stdiff_jax import video as video_lib

TABLE4 = [(24, 11, 3), (64, 31, 11), (128, 63, 15), (256, 127, 32)]


@pytest.mark.parametrize("length,n_fft,hop", TABLE4)
def test_video_round_trip_is_exact(length, n_fft, hop):
    x = np.random.default_rng(0).uniform(-1, 1, (4, length, 5)).astype(np.float32)
    v = video_lib.series_to_video(x, n_fft=n_fft, hop=hop)
    assert v.shape[0] == 4 and v.shape[2:] == (n_fft // 2 + 1, 5, 3)
    recon = video_lib.video_to_series(v, n_fft=n_fft, hop=hop, length=length)
    assert float(jnp.max(jnp.abs(recon - x))) < 1e-5


def test_ema_trend_matches_recurrence():
    x = np.random.default_rng(1).normal(size=(2, 24, 3)).astype(np.float32)
    got = np.asarray(video_lib.ema_trend(x, 0.3, axis=1))
    want = x.copy()
    for n in range(1, 24):
        want[:, n] = 0.3 * x[:, n] + 0.7 * want[:, n - 1]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        video_lib.ema_trend(x, 1.5)


def test_trend_channel_carries_a_constant_series():
    x = np.full((1, 24, 2), 0.7, np.float32)
    v = np.asarray(video_lib.series_to_video(x, n_fft=11, hop=3))
    np.testing.assert_allclose(v[..., 2], 0.7, atol=1e-6)  # trend, broadcast over frequency
    np.testing.assert_allclose(v[..., :2], 0.0, atol=1e-6)  # nothing left for the STFT


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"\(B, L, K\)"):
        video_lib.series_to_video(np.zeros((24, 3)), n_fft=11, hop=3)
    with pytest.raises(ValueError, match="too short"):
        video_lib.series_to_video(np.zeros((1, 4, 3)), n_fft=11, hop=3)
    with pytest.raises(ValueError, match="video_to_series expects"):
        video_lib.video_to_series(np.zeros((1, 7, 6, 3, 3)), n_fft=11, hop=3, length=24)


def test_statistics_normalise_and_invert():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(600, 24, 1))
    x = np.tanh(np.concatenate([base, base + 0.3 * rng.normal(size=base.shape),
                                rng.normal(size=base.shape)], axis=2)).astype(np.float32)
    normalizer, stats = video_lib.fit_video_statistics(x, n_fft=11, hop=3, chunk_size=256)
    v = video_lib.series_to_video(x, n_fft=11, hop=3)
    z = np.asarray(normalizer.normalize(v))
    moving = normalizer.std != 1.0
    np.testing.assert_allclose(z.mean((0, 1)), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std((0, 1))[moving], 1.0, atol=1e-3)
    assert float(jnp.max(jnp.abs(normalizer.denormalize(z) - v))) < 1e-5
    # Covariates 0 and 1 share a signal, covariate 2 is independent of both.
    assert stats.cov_corr.shape == (3, 3) and stats.freq_cov.shape == (6, 6)
    np.testing.assert_allclose(np.diag(stats.cov_corr), 1.0, atol=1e-5)
    np.testing.assert_allclose(stats.cov_corr, stats.cov_corr.T, atol=1e-6)
    assert stats.cov_corr[0, 1] > 0.8 and abs(stats.cov_corr[0, 2]) < 0.1
    np.testing.assert_allclose(stats.freq_cov, stats.freq_cov.T, atol=1e-6)
    assert np.all(np.linalg.eigvalsh(stats.freq_cov) > -1e-6)


def test_statistics_round_trip_through_dicts():
    x = np.random.default_rng(3).uniform(-1, 1, (64, 24, 2)).astype(np.float32)
    normalizer, stats = video_lib.fit_video_statistics(x, n_fft=11, hop=3)
    again = video_lib.VideoNormalizer.from_dict(normalizer.to_dict())
    np.testing.assert_array_equal(again.mean, normalizer.mean)
    stats_again = video_lib.AttentionStats.from_dict(stats.to_dict())
    np.testing.assert_array_equal(stats_again.freq_cov, stats.freq_cov)


def sine_like_windows(num, length=24, k=3, seed=4):
    """Windows that all start near 0.5, as sines do: far from stationary across frames."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0, 0.3, (num, 1, k))
    return (0.5 * np.sin(freq * np.arange(length)[None, :, None]) + 0.5).astype(np.float32)


def test_per_frame_normaliser_standardises_every_frame_and_inverts():
    x = sine_like_windows(500)
    normalizer, _ = video_lib.fit_video_statistics(x, n_fft=11, hop=3, normalizer="frame")
    v = video_lib.series_to_video(x, n_fft=11, hop=3)
    assert normalizer.mean.shape == normalizer.std.shape == v.shape[1:]
    z = np.asarray(normalizer.normalize(v))
    moving = np.broadcast_to(normalizer.std != 1.0, z.shape[1:])
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(0)[moving], 1.0, atol=1e-3)
    np.testing.assert_allclose(normalizer.denormalize(z), v, atol=1e-5)
    pooled, _ = video_lib.fit_video_statistics(x, n_fft=11, hop=3)
    first, last = np.asarray(pooled.normalize(v))[:, 0], np.asarray(pooled.normalize(v))[:, -1]
    assert first[..., 2].std() < 0.5 * last[..., 2].std()  # what pooling leaves behind
    with pytest.raises(ValueError, match="config.video.normalizer"):
        video_lib.fit_video_statistics(x, n_fft=11, hop=3, normalizer="frames")
