"""The framing STFT: shapes, exact inversion, tone placement and a DFT-sum reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stdiff_jax import stft as stft_lib

TABLE4 = [(24, 11, 3, 8), (64, 31, 11, 6), (128, 63, 15, 9), (256, 127, 32, 8)]


@pytest.mark.parametrize("length,n_fft,hop,frames", TABLE4)
def test_shapes_and_round_trip(length, n_fft, hop, frames):
    x = np.random.default_rng(0).uniform(-1, 1, (3, 2, length)).astype(np.float32)
    spec = stft_lib.stft(x, n_fft, hop)
    assert spec.shape == (3, 2, frames, n_fft // 2 + 1)
    assert stft_lib.num_frames(length, n_fft, hop) == frames
    recon = stft_lib.istft(spec, n_fft, hop, length)
    assert float(jnp.max(jnp.abs(recon - x))) < 1e-5


@pytest.mark.parametrize("center", [True, False])
def test_matches_dft_sum(center):
    n_fft, hop, length = 11, 3, 24
    x = np.random.default_rng(1).normal(size=length)
    win = stft_lib.get_window("hann", n_fft)
    padded = np.pad(x, n_fft // 2, mode="reflect") if center else x
    frames = 1 + (len(padded) - n_fft) // hop
    n, k = np.arange(n_fft), np.arange(n_fft // 2 + 1)
    expected = np.stack([
        (padded[m * hop:m * hop + n_fft] * win) @ np.exp(-2j * np.pi * np.outer(n, k) / n_fft)
        for m in range(frames)])
    got = np.asarray(stft_lib.stft(x.astype(np.float32), n_fft, hop, center=center))
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_pure_tone_lands_in_its_bin():
    n_fft, hop, length, bin_ = 31, 11, 64, 5
    x = np.cos(2 * np.pi * bin_ * np.arange(length) / n_fft).astype(np.float32)
    mag = np.abs(np.asarray(stft_lib.stft(x, n_fft, hop)))  # (T, F)
    assert np.all(mag.argmax(axis=-1) == bin_)


def test_jit_vmap_grad():
    n_fft, hop, length = 11, 3, 24
    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, length)), jnp.float32)
    f = jax.jit(lambda s: stft_lib.istft(stft_lib.stft(s, n_fft, hop), n_fft, hop, length))
    np.testing.assert_allclose(jax.vmap(f)(x), x, atol=1e-5)
    # The round trip is the identity, so its gradient of sum(.) is all ones.
    grad = jax.grad(lambda s: jnp.sum(f(s)))(x)
    np.testing.assert_allclose(grad, np.ones_like(x), atol=1e-5)


def test_every_sample_covered_for_odd_windows():
    for length, n_fft, hop, _ in TABLE4:
        stft_lib.check_stft_settings(length, n_fft, hop)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="too short"):
        stft_lib.check_stft_settings(4, 11, 3)
    with pytest.raises(ValueError, match="hop"):
        stft_lib.check_stft_settings(24, 11, 12)
    with pytest.raises(ValueError, match="window"):
        stft_lib.get_window("kaiser", 11)
