"""ItalyPowerDemand (UCR): 24 hourly electricity demands of a day, 2 classes (October-March /
April-September), 67 training and 1,029 test days, read from the archive's .ts files
(`ucr:ItalyPowerDemand`, stdiff_jax/data/labelled.py); variants: cpu, cpu_long, smoke (see
configs/base.py). The test days score CAS against TRTR (stdiff_jax/metrics/classes.py)."""

from configs import base


def get_config(arg=None):
    return base.make_ucr_config("ItalyPowerDemand", arg, batch_size=32)  # classes of 34 and 33
