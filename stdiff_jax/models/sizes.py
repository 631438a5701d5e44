"""Named network sizes: the paper's Table-4 rows and small CPU sizes.

Each entry fixes the video transform (n_fft, hop) and the transformer (patch_freq, depth, hidden,
heads, mlp_ratio). Configs copy an entry into `config.video` / `config.model`, so every field stays
overridable from the command line.
"""

# L: (n_fft, hop, patch_freq, depth, hidden, heads, mlp_ratio), Table 4 of the paper.
TABLE4 = {
    24: dict(n_fft=11, hop=3, patch_freq=2, depth=6, hidden=192, heads=4, mlp_ratio=4.0),
    64: dict(n_fft=31, hop=11, patch_freq=4, depth=8, hidden=384, heads=6, mlp_ratio=4.0),
    128: dict(n_fft=63, hop=15, patch_freq=8, depth=8, hidden=384, heads=6, mlp_ratio=4.0),
    256: dict(n_fft=127, hop=32, patch_freq=16, depth=8, hidden=384, heads=6, mlp_ratio=4.0),
}

# Transformer sizes that replace the Table-4 ones for CPU work; the STFT settings stay those of L.
# On XLA:CPU the cost is per token and small widths do not amortise it, so the lever is the token
# count: patch_freq 6 makes one patch of all F = 6 bins at L = 24 (8 frames x 7 covariates = 56
# tokens instead of 168). Process CPU per training step at L = 24, K = 7, batch 128, one thread
# (benchmarks/train_step.py on the shared machine, 2026-12-01): one block of width 48 (the earlier
# `cpu`), 150 ms; two blocks of width 64 (`cpu`, `cpu_long`), 464 ms; the same with patch_freq 3
# (F' = 2), 1,054 ms; three blocks of width 96, 1,110 ms.
# - `cpu`: two blocks of width 64, trained within 900 CPU s on the idle machine (the steps and
#   batch follow from the data's shape: stdiff_jax/budget.py). At equal CPU (3,000 steps against
#   9,000) it beat one block of width 48 on ETTh and stocks and tied on sines (2 seeds each,
#   docs/ablations.md): depth and width buy more than steps here.
# - `cpu_long`: the same network, trained within 10,800 CPU s.
# Longer L keep more frequency patches (F' = ceil(F / 6)): 11 at L = 256, where a step costs ~10x
# one at L = 24 and the budget buys fewer steps (docs/costs.md).
# Both keep one covariate a token (patch_cov 1); grouping covariates (model.patch_cov > 1) cuts
# the cost at K = 28-50 (docs/costs.md, "Covariate patches") but is not a default until an A/B at
# equal CPU (benchmarks/cov_patch_ab.py) says it wins.
CPU_SIZES = {
    "cpu": dict(depth=2, hidden=64, heads=4, mlp_ratio=2.0, patch_freq=6, patch_cov=1),
    "cpu_long": dict(depth=2, hidden=64, heads=4, mlp_ratio=2.0, patch_freq=6, patch_cov=1),
    "smoke": dict(depth=1, hidden=32, heads=2, mlp_ratio=2.0),
}


def stft_settings(seq_len):
    """(n_fft, hop) for a sequence length: Table 4 where it has a row, else the paper's rule.

    The paper (Section 5) scales n_fft = L/2 - 1 and hop = ceil(n_fft/4); Table 4 departs from the
    rule's hop at L = 64 and 128, and Table 4 wins where it has a row.
    """
    if seq_len in TABLE4:
        return TABLE4[seq_len]["n_fft"], TABLE4[seq_len]["hop"]
    n_fft = max(3, seq_len // 2 - 1)
    return n_fft, -(-n_fft // 4)


def table4_row(seq_len):
    """The Table-4 row for seq_len, or the row of the nearest tabulated length."""
    nearest = min(TABLE4, key=lambda length: abs(length - seq_len))
    return dict(TABLE4[nearest])
