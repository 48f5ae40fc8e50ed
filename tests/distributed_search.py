"""Helper for test_search.py: one process of a distributed keras-tuner search.

Run with KERASTUNER_TUNER_ID (chief / tuner0 / tuner1), KERASTUNER_ORACLE_IP and
KERASTUNER_ORACLE_PORT set; argv[1] is the shared output folder.
"""

import dataclasses
import sys

from tfq_pareto import data, experiment, search, training


def main(out_dir):
    train, test, info = data.load("digits")
    datasets = (train.take(96), test.take(48), dataclasses.replace(info, num_train=96, num_test=48))
    base = experiment.RunConfig(model="resnet_cifar", depth=20, dataset="digits")
    recipe = training.Recipe(epochs=1, warmup_epochs=0, batch_size=48)
    budget = search.budget_of(base, info, width_multiplier=0.25, conv_bits=8)
    search.dual_precision_search(base, budget, bits=[1, 2, 4, 8], recipe=recipe, out_dir=out_dir,
                                 datasets=datasets)


if __name__ == "__main__":
    main(sys.argv[1])
