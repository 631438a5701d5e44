run regimes_c10_s1 --config=configs/suite_regimes.py:cpu $R $M --config.train.seed=1
