"""ItalyPowerDemand (UCR): 24 hourly electricity demands of a day, 2 classes (October-March /
April-September), 67 training and 1,029 test days, read from the archive's .ts files
(`ucr:ItalyPowerDemand`, stdiff_jax/data/labelled.py); variants: cpu, cpu_long, smoke (see
configs/base.py). The test days score CAS against TRTR (stdiff_jax/metrics/classes.py)."""

from configs import base


def get_config(arg=None):
    config = base.make_config("ucr:ItalyPowerDemand", arg)
    with config.unlocked():
        # 67 days: a validation hold-out would take half of them, and a batch must not exceed
        # the smaller class (33 days).
        config.data.val_fraction = 0.0
        config.train.batch_size = 32
    return config
