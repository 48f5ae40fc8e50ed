"""Datasets as tf.data pipelines: digits (embedded), tfds datasets, and .npz files.

Every source returns raw examples, ``(image uint8 (H, W, C), label int64)``,
unbatched, plus a :class:`DatasetInfo`; :func:`pipeline` adds augmentation,
normalisation, batching and prefetching.

Sources (``load(spec)``):

* ``"digits"``: the 8x8 handwritten digits scikit-learn ships inside its wheel
  (1,797 images), upsampled to ``image_size`` (16 by default): no download.
* ``"cifar10"``, ``"cifar100"``, ``"mnist"``, ``"imagenet2012"``: through
  tensorflow-datasets from ``data_dir``; never downloads unless ``download=True``,
  and says how to prepare the data when it is absent.
* ``"npz:TRAIN.npz[,TEST.npz]"``: arrays ``x`` (N, H, W[, C]) uint8 and ``y`` (N,);
  without a test file the last ``test_fraction`` of a seeded shuffle is held out.
"""

import dataclasses
import os
import typing

import numpy as np

from tfq_pareto import checks
from tfq_pareto.backend import tf

AUTOTUNE = tf.data.AUTOTUNE

#: tfds datasets and their (num_classes, image shape, train split, test split).
TFDS_DATASETS = {
    "cifar10": (10, (32, 32, 3), "train", "test"),
    "cifar100": (100, (32, 32, 3), "train", "test"),
    "mnist": (10, (28, 28, 1), "train", "test"),
    "imagenet2012": (1000, (224, 224, 3), "train", "validation"),
}

#: Per-channel mean and std of the pixels (0..255) used for normalisation.
PIXEL_STATS = {
    "cifar10": ((125.3, 123.0, 113.9), (63.0, 62.1, 66.7)),
    "cifar100": ((129.3, 124.1, 112.4), (68.2, 65.4, 70.4)),
    "mnist": ((33.3,), (78.6,)),
    "imagenet2012": ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
}

#: Augmentations :func:`pipeline` knows.
AUGMENTATIONS = (None, "crop", "crop_flip", "imagenet")

#: A training set at most this large (decoded, in bytes) is shuffled whole every epoch.
FULL_SHUFFLE_MAX_BYTES = 4 << 30

#: Shuffle buffer of a training set that is larger, or whose size is unknown (streamed).
STREAM_SHUFFLE_BUFFER = 10_000

#: Data sources :func:`load` knows (plus "npz:PATH[,PATH]").
SOURCES = ("digits",) + tuple(TFDS_DATASETS)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model and a pipeline need to know about a dataset."""

    name: str
    num_classes: int
    image_shape: tuple
    num_train: int
    num_test: int
    mean: tuple
    std: tuple
    augmentation: str = None


class Datasets(typing.NamedTuple):
    """What :func:`load` returns: raw ``train`` and ``test`` examples and their :class:`DatasetInfo`.

    A named tuple, so ``train, test, info = load(...)`` keeps working.
    """

    train: tf.data.Dataset
    test: tf.data.Dataset
    info: DatasetInfo


def as_datasets(value):
    """``value`` as :class:`Datasets`: a ``Datasets`` or any ``(train, test, info)`` triple."""
    if isinstance(value, Datasets):
        return value
    if not isinstance(value, (tuple, list)) or len(value) != 3 or not isinstance(value[2], DatasetInfo):
        raise ValueError("datasets must be (train, test, info) as tfq_pareto.data.load returns, "
                         f"info a DatasetInfo; received {type(value).__name__}")
    return Datasets(*value)


def _from_arrays(x, y):
    return tf.data.Dataset.from_tensor_slices((x, y.astype("int64")))


def _stats(x):
    pixels = x.reshape(-1, x.shape[-1]).astype("float64")
    return tuple(pixels.mean(axis=0).round(3)), tuple(pixels.std(axis=0).round(3) + 1e-3)


def _split(x, y, test_fraction, seed):
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    cut = len(x) - int(round(test_fraction * len(x)))
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def digits(image_size=16, test_fraction=0.2, seed=0):
    """The 8x8 digits of scikit-learn, as uint8 images (image_size, image_size, 1).

    Returns:
      (train, test, info): two unbatched datasets and a :class:`DatasetInfo`.
    """
    from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel

    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8; received {image_size!r}")
    data = load_digits()
    images = (data.images[..., None] * (255.0 / 16.0)).astype("float32")
    images = tf.image.resize(images, (image_size, image_size), method="bilinear").numpy()
    x = np.clip(np.round(images), 0, 255).astype("uint8")
    (x_train, y_train), (x_test, y_test) = _split(x, data.target, test_fraction, seed)
    mean, std = _stats(x_train)
    info = DatasetInfo("digits", 10, x.shape[1:], len(x_train), len(x_test), mean, std, "crop")
    return Datasets(_from_arrays(x_train, y_train), _from_arrays(x_test, y_test), info)


def _read_npz(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"npz file {path!r} does not exist")
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in ("x", "y") if k not in data.files]
        if missing:
            raise ValueError(f"npz file {path!r} lacks arrays {missing}; it has {data.files}")
        x, y = data["x"], data["y"]
    if x.dtype != np.uint8 or x.ndim not in (3, 4):
        raise ValueError(
            f"npz file {path!r}: x must be uint8 (N, H, W[, C]); received {x.dtype} {x.shape}"
        )
    if x.ndim == 3:
        x = x[..., None]
    y = np.asarray(y).reshape(-1)
    if len(y) != len(x):
        raise ValueError(f"npz file {path!r}: {len(x)} images but {len(y)} labels")
    return x, y


def npz(train_path, test_path=None, test_fraction=0.2, seed=0):
    """Images from ``.npz`` files with ``x`` (N, H, W[, C]) uint8 and ``y`` (N,) labels.

    Returns:
      (train, test, info).
    """
    x, y = _read_npz(train_path)
    if test_path:
        x_test, y_test = _read_npz(test_path)
        if x_test.shape[1:] != x.shape[1:]:
            raise ValueError(
                f"test images {x_test.shape[1:]} differ from train images {x.shape[1:]}"
            )
        x_train, y_train = x, y
    else:
        (x_train, y_train), (x_test, y_test) = _split(x, y, test_fraction, seed)
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    mean, std = _stats(x_train)
    name = os.path.splitext(os.path.basename(train_path))[0]
    augmentation = "crop_flip" if x.shape[-1] == 3 else "crop"
    info = DatasetInfo(name, num_classes, x.shape[1:], len(x_train), len(x_test), mean, std,
                       augmentation)
    return Datasets(_from_arrays(x_train, y_train), _from_arrays(x_test, y_test), info)


def tfds_dataset(name, data_dir=None, download=False):
    """A tensorflow-datasets dataset as (train, test, info); never hangs on a missing download.

    Raises:
      ValueError: an unknown name.
      FileNotFoundError: the data is not prepared in ``data_dir`` and ``download`` is False.
    """
    if name not in TFDS_DATASETS:
        raise ValueError(f"dataset must be one of {tuple(TFDS_DATASETS)}; received {name!r}")
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        if not download:
            raise FileNotFoundError(
                f"tfds dataset {name!r} is not prepared in data_dir {builder.data_dir!r}. "
                "Prepare it where there is internet (`tfds build "
                f"{name} --data_dir DIR`; imagenet2012 needs its archives in "
                "DIR/downloads/manual), pass download=True, or use an .npz file (npz:PATH)"
            )
        builder.download_and_prepare()
    num_classes, shape, train_split, test_split = TFDS_DATASETS[name]
    # File order shuffled each epoch; pipeline() then shuffles examples (see shuffle_buffer).
    train = builder.as_dataset(split=train_split, as_supervised=True, shuffle_files=True)
    test = builder.as_dataset(split=test_split, as_supervised=True)

    def count(split, dataset):
        try:
            return builder.info.splits[split].num_examples
        except KeyError:  # split metadata missing (e.g. a mocked builder): count the data
            cardinality = int(dataset.cardinality())
            return cardinality if cardinality >= 0 else sum(1 for _ in dataset)

    augmentation = "imagenet" if name == "imagenet2012" else (
        "crop_flip" if shape[-1] == 3 else "crop")
    mean, std = PIXEL_STATS[name]
    info = DatasetInfo(name, num_classes, shape, count(train_split, train),
                       count(test_split, test), mean, std, augmentation)
    return Datasets(train, test, info)


def load(spec, *, data_dir=None, download=False, image_size=16, test_fraction=0.2, seed=0):
    """Loads a dataset by spec: "digits", a tfds name, or "npz:TRAIN[,TEST]".

    Returns:
      (train, test, info): unbatched (uint8 image, int64 label) datasets and a DatasetInfo.
    """
    if not isinstance(spec, str):
        raise ValueError(f"dataset must be a string; received {spec!r}")
    if spec == "digits":
        return digits(image_size=image_size, test_fraction=test_fraction, seed=seed)
    if spec.startswith("npz:"):
        paths = spec[4:].split(",")
        if not paths[0] or len(paths) > 2:
            raise ValueError(f"npz dataset must be 'npz:TRAIN.npz[,TEST.npz]'; received {spec!r}")
        return npz(paths[0], paths[1] if len(paths) == 2 else None, test_fraction, seed)
    if spec in TFDS_DATASETS:
        return tfds_dataset(spec, data_dir=data_dir, download=download)
    raise ValueError(
        f"dataset must be one of {SOURCES} or 'npz:TRAIN.npz[,TEST.npz]'; received {spec!r}"
    )


# The augmentations are stateless random ops driven by a per-example seed (a seeded
# tf.data.Dataset.random zipped with the examples): stateful random ops inside a
# parallel map draw in whatever order the threads run, so a seeded run would not
# repeat itself.


def _crop(image, pad, flip, seed):
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    shape = tf.shape(image)
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    image = tf.image.stateless_random_crop(padded, shape, crop_seed)
    return tf.image.stateless_random_flip_left_right(image, flip_seed) if flip else image


def _imagenet_train(image, size, seed):
    box_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), tf.zeros([0, 0, 4], tf.float32), box_seed, area_range=(0.08, 1.0),
        aspect_ratio_range=(3 / 4, 4 / 3), min_object_covered=0.0, use_image_if_no_bounding_boxes=True)
    image = tf.slice(image, begin, crop_size)
    image = tf.image.resize(image, (size, size))
    return tf.image.stateless_random_flip_left_right(image, flip_seed)


def _imagenet_eval(image, size):
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = (size / 0.875) / tf.reduce_min(shape)
    image = tf.image.resize(image, tf.cast(tf.round(shape * scale), tf.int32))
    return tf.image.resize_with_crop_or_pad(image, size, size)


def _element_bytes(dataset):
    """Bytes of one (decoded) example, or None when a shape is not fully known."""
    total = 0
    for spec in tf.nest.flatten(dataset.element_spec):
        if not spec.shape.is_fully_defined():
            return None
        total += spec.shape.num_elements() * spec.dtype.size
    return total


def shuffle_buffer_for(dataset):
    """The buffer that shuffles ``dataset`` uniformly, or the streaming buffer.

    SGD needs an i.i.d. order; a training set stored sorted by class (common
    after converting per-class folders) trained through a small buffer sees one
    class at a time. A dataset of known size up to :data:`FULL_SHUFFLE_MAX_BYTES`
    (arrays, the digits, npz files, tfds CIFAR/MNIST) gets a buffer of its whole
    size, i.e. a fresh uniform permutation every epoch. Otherwise (ImageNet,
    streamed data of unknown size) the buffer is :data:`STREAM_SHUFFLE_BUFFER`,
    and the data must already come in a random order (tfds shuffles its files).
    """
    count = int(dataset.cardinality())
    element = _element_bytes(dataset)
    if count > 0 and element is not None and count * element <= FULL_SHUFFLE_MAX_BYTES:
        return count
    return STREAM_SHUFFLE_BUFFER


def pipeline(dataset, info, *, training, batch_size=128, augmentation="auto", image_size=None,
             shuffle_buffer="auto", seed=None, one_hot=False):
    """Augments (when training), normalises, shuffles, batches and prefetches.

    Args:
      dataset: unbatched (uint8 image, label) pairs from :func:`load`.
      info: its :class:`DatasetInfo` (mean/std, classes, default augmentation).
      training: augment and shuffle when True.
      batch_size: examples per batch (>= 1).
      augmentation: "auto" (the dataset's own), None, "crop" (pad + random crop),
        "crop_flip" (CIFAR: 4-pixel pad, random crop, horizontal flip) or
        "imagenet" (random resized crop + flip; resize + centre crop to evaluate).
      image_size: output size for "imagenet" (default: info.image_shape).
      shuffle_buffer: shuffle buffer when training; "auto" (default): the whole
        training set when its size is known and it fits in memory (a uniform
        reshuffle every epoch), else 10,000 (see :func:`shuffle_buffer_for`).
      seed: shuffle and augmentation seed (None: unseeded); with a seed (and the
        process's TF seed set, as :func:`tfq_pareto.experiment.run` does) an epoch's
        order and augmentations repeat exactly.
      one_hot: labels as one-hot float vectors (for label smoothing).

    Returns:
      A batched ``tf.data.Dataset`` of (float32 normalised images, labels).
    """
    if augmentation == "auto":
        augmentation = info.augmentation
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS}; received {augmentation!r}")
    checks.check_int("batch_size", batch_size)
    size = image_size or info.image_shape[0]
    mean = tf.constant(info.mean, tf.float32)
    std = tf.constant(info.std, tf.float32)
    pad = max(1, info.image_shape[0] // 8)  # 4 pixels at 32x32, as the CIFAR recipe

    def prepare(image, label, random_seed=None):
        image = tf.cast(image, tf.float32)
        if augmentation == "imagenet":
            image = (_imagenet_train(image, size, random_seed) if training
                     else _imagenet_eval(image, size))
        elif training and augmentation in ("crop", "crop_flip"):
            image = _crop(image, pad, augmentation == "crop_flip", random_seed)
        image = (image - mean) / std
        label = tf.cast(label, tf.int64)
        if one_hot:
            label = tf.one_hot(label, info.num_classes)
        return image, label

    if shuffle_buffer == "auto":
        shuffle_buffer = shuffle_buffer_for(dataset) if training else None
    elif isinstance(shuffle_buffer, bool) or not isinstance(shuffle_buffer, int) or shuffle_buffer < 1:
        raise ValueError(f"shuffle_buffer must be 'auto' or an int >= 1; received {shuffle_buffer!r}")
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if augmentation is not None:  # one stateless seed (2 int64) per example
            seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
            dataset = tf.data.Dataset.zip((dataset, seeds)).map(
                lambda example, random_seed: prepare(*example, random_seed),
                num_parallel_calls=AUTOTUNE)
            return dataset.batch(batch_size).prefetch(AUTOTUNE)
    dataset = dataset.map(prepare, num_parallel_calls=AUTOTUNE)
    return dataset.batch(batch_size).prefetch(AUTOTUNE)


def sample(dataset, limit, seed=0):
    """``limit`` examples of ``dataset`` drawn uniformly at random (seeded), in any file order.

    The first ``limit`` examples of a file stored sorted by class (e.g. a test set
    written class by class, as this project's CIFAR-10 ``.npz`` is) are one or two
    classes, so a calibration or validation subset taken from the front is
    biased. This draws through :func:`shuffle_buffer_for`'s buffer (the whole set
    when it fits in memory: a uniform sample; a streamed set must come shuffled),
    the same sample on every pass. ``limit`` >= the set's size: the whole set, in
    its order.
    """
    checks.check_int("limit", limit)
    count = int(dataset.cardinality())
    if 0 < count <= limit:
        return dataset
    return dataset.shuffle(shuffle_buffer_for(dataset), seed=seed,
                           reshuffle_each_iteration=False).take(limit)


def _export_arrays(dataset, info, limit, image_size):
    """``limit`` examples (:func:`sample`), preprocessed as in evaluation, as ``(x, y)`` arrays."""
    batches = pipeline(sample(dataset, limit), info, training=False, batch_size=256,
                       image_size=image_size)
    xs, ys = [], []
    for x, y in batches:
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
    return np.concatenate(xs), np.concatenate(ys)


def datasets_arrays(datasets, *, calibration_samples=500, validation_samples=2000):
    """:func:`export_arrays` of already loaded :class:`Datasets` (train, test, info)."""
    train, test, info = as_datasets(datasets)
    checks.check_int("calibration_samples", calibration_samples, minimum=1)
    checks.check_int("validation_samples", validation_samples, minimum=0)
    size = info.image_shape[0] if info.augmentation == "imagenet" else None
    calibration, _ = _export_arrays(train, info, calibration_samples, size)
    validation = _export_arrays(test, info, validation_samples, size) if validation_samples else None
    return calibration, validation


def export_arrays(spec, *, data_dir=None, image_size=16, calibration_samples=500,
                  validation_samples=2000):
    """``(calibration_x, (validation_x, validation_y))`` for ``tflite_export.export``.

    Args:
      spec: a :func:`tfq_pareto.data.load` source: ``"digits"``, a tfds name or
        ``"npz:TRAIN[,TEST]"``; the model must have been trained on it.
      data_dir: tensorflow-datasets ``data_dir``.
      image_size: side of the digits images (as in training).
      calibration_samples: training images used to calibrate (no augmentation), a
        seeded uniform sample of the training set (:func:`sample`).
      validation_samples: test images used to measure accuracy (0: none), a seeded
        uniform sample of the test set.
    """
    for name, value in (("calibration_samples", calibration_samples),
                        ("validation_samples", validation_samples)):
        checks.check_int(name, value, minimum=0)
    if calibration_samples < 1:
        raise ValueError(f"calibration_samples must be >= 1; received {calibration_samples!r}")
    train, test, info = load(spec, data_dir=data_dir, image_size=image_size)
    size = info.image_shape[0] if info.augmentation == "imagenet" else None
    calibration, _ = _export_arrays(train, info, calibration_samples, size)
    validation = _export_arrays(test, info, validation_samples, size) if validation_samples else None
    return calibration, validation
