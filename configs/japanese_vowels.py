"""JapaneseVowels (UEA): 12 LPC cepstrum coefficients of a speaker's /ae/, 9 speakers (the
classes), 270 training and 370 test utterances of 7-29 frames, each resampled linearly to
seq_len (24) frames (`ucr:JapaneseVowels`, stdiff_jax/data/labelled.py); variants: cpu,
cpu_long, smoke (see configs/base.py)."""

from configs import base


def get_config(arg=None):
    config = base.make_config("ucr:JapaneseVowels", arg)
    with config.unlocked():
        # 30 utterances per speaker: no validation hold-out, and batches no larger than a class.
        config.data.val_fraction = 0.0
        config.train.batch_size = 24
    return config
