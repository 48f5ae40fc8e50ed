"""Calibration and validation arrays from a ``tfq_pareto.data`` source, preprocessed as in training."""

import numpy as np

from tfq_pareto import data as data_lib


def _arrays(dataset, info, limit, image_size):
    batches = data_lib.pipeline(dataset.take(limit), info, training=False, batch_size=256,
                                image_size=image_size)
    xs, ys = [], []
    for x, y in batches:
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
    return np.concatenate(xs), np.concatenate(ys)


def export_arrays(spec, *, data_dir=None, image_size=16, calibration_samples=500,
                  validation_samples=2000):
    """``(calibration_x, (validation_x, validation_y))`` for :func:`tflite_export.export`.

    Args:
      spec: a :func:`tfq_pareto.data.load` source: ``"digits"``, a tfds name or
        ``"npz:TRAIN[,TEST]"``; the model must have been trained on it.
      data_dir: tensorflow-datasets ``data_dir``.
      image_size: side of the digits images (as in training).
      calibration_samples: training images used to calibrate (no augmentation).
      validation_samples: test images used to measure accuracy (0: none).
    """
    for name, value in (("calibration_samples", calibration_samples),
                        ("validation_samples", validation_samples)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0; received {value!r}")
    if calibration_samples < 1:
        raise ValueError(f"calibration_samples must be >= 1; received {calibration_samples!r}")
    train, test, info = data_lib.load(spec, data_dir=data_dir, image_size=image_size)
    size = info.image_shape[0] if info.augmentation == "imagenet" else None
    calibration, _ = _arrays(train, info, calibration_samples, size)
    validation = _arrays(test, info, validation_samples, size) if validation_samples else None
    return calibration, validation
