"""JapaneseVowels (UEA): 12 LPC cepstrum coefficients of a speaker's /ae/, 9 speakers (the
classes), 270 training and 370 test utterances of 7-29 frames, each resampled linearly to
seq_len (24) frames (`ucr:JapaneseVowels`, stdiff_jax/data/labelled.py); variants: cpu,
cpu_long, smoke (see configs/base.py)."""

from configs import base


def get_config(arg=None):
    return base.make_ucr_config("JapaneseVowels", arg, batch_size=24)  # 30 per speaker
