"""Dataset sources and the input pipeline."""

import numpy as np
import pytest

from tfq_pareto import data
from tfq_pareto.backend import tf


def _first(dataset):
    return next(iter(dataset))


def test_digits_source():
    train, test, info = data.load("digits", image_size=16)
    x, y = _first(train)
    assert x.dtype.name == "uint8" and tuple(x.shape) == (16, 16, 1)
    assert info.num_classes == 10 and info.image_shape == (16, 16, 1)
    labels = np.array([int(y) for _, y in train])
    assert len(labels) == info.num_train and set(labels) == set(range(10))
    assert info.num_train + info.num_test == 1797
    assert len(list(test)) == info.num_test


def _write_npz(path, n, shape=(8, 8, 3), classes=4, dtype="uint8"):
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, size=(n,) + shape).astype(dtype),
             y=rng.integers(0, classes, size=n))


def test_npz_source_with_and_without_test_file(tmp_path):
    train_path, test_path = tmp_path / "train.npz", tmp_path / "test.npz"
    _write_npz(train_path, 50)
    _write_npz(test_path, 20)
    train, test, info = data.load(f"npz:{train_path},{test_path}")
    assert (info.num_train, info.num_test, info.image_shape) == (50, 20, (8, 8, 3))
    x, y = _first(train)
    assert x.dtype.name == "uint8" and y.dtype.name == "int64" and 0 <= int(y) < info.num_classes
    _, _, split_info = data.load(f"npz:{train_path}", test_fraction=0.2)
    assert (split_info.num_train, split_info.num_test) == (40, 10)


def test_npz_grayscale_gets_a_channel(tmp_path):
    path = tmp_path / "mnist_like.npz"
    _write_npz(path, 10, shape=(28, 28), classes=10)
    _, _, info = data.load(f"npz:{path}")
    assert info.image_shape == (28, 28, 1)


@pytest.mark.parametrize(
    "setup,match",
    [
        (lambda p: None, "does not exist"),
        (lambda p: np.savez(p, images=np.zeros((2, 4, 4), "uint8")), "lacks arrays"),
        (lambda p: np.savez(p, x=np.zeros((2, 4, 4), "float32"), y=np.zeros(2)), "must be uint8"),
        (lambda p: np.savez(p, x=np.zeros((2, 4, 4), "uint8"), y=np.zeros(3)), "2 images but 3 labels"),
    ],
)
def test_npz_errors(tmp_path, setup, match):
    path = tmp_path / "bad.npz"
    setup(path)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        data.load(f"npz:{path}")


def test_real_shared_cifar_npz_if_present():
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "cifar10_test.npz")
    if not os.path.exists(path):
        pytest.skip("../shared/data is not on this machine")
    train, _, info = data.load(f"npz:{path}", test_fraction=0.1)
    assert info.image_shape == (32, 32, 3) and info.num_classes == 10
    assert abs(info.mean[0] - 126.0) < 2.0


def test_missing_tfds_data_fails_fast(tmp_path):
    with pytest.raises(FileNotFoundError, match="not prepared in data_dir.*npz:PATH"):
        data.load("cifar100", data_dir=str(tmp_path))


def test_tfds_source_through_a_mocked_builder(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
    with tfds.testing.mock_data(num_examples=6, data_dir=str(tmp_path)):
        train, test, info = data.load("cifar10", data_dir=str(tmp_path))
        x, y = _first(train)
        assert tuple(x.shape) == (32, 32, 3) and x.dtype.name == "uint8"
        assert 0 <= int(y) < 10 and info.num_classes == 10 and info.augmentation == "crop_flip"
        batch_x, batch_y = _first(data.pipeline(train, info, training=True, batch_size=4))
        assert tuple(batch_x.shape) == (4, 32, 32, 3) and batch_x.dtype.name == "float32"


@pytest.mark.parametrize("bad", ["cifar1000", "npz:", 3])
def test_unknown_dataset(bad):
    with pytest.raises(ValueError, match="dataset must be"):
        data.load(bad)


def test_pipeline_normalises_batches_and_augments():
    train, test, info = data.load("digits")
    batches = data.pipeline(train, info, training=True, batch_size=32, seed=1)
    x, y = _first(batches)
    assert tuple(x.shape) == (32, 16, 16, 1) and x.dtype.name == "float32"
    full = np.concatenate([b.numpy() for b, _ in data.pipeline(test, info, training=False, batch_size=64)])
    assert abs(full.mean()) < 0.2 and 0.7 < full.std() < 1.3
    # Evaluation is deterministic; training crops differ between passes.
    a = _first(data.pipeline(test, info, training=False, batch_size=8))[0].numpy()
    b = _first(data.pipeline(test, info, training=False, batch_size=8))[0].numpy()
    np.testing.assert_array_equal(a, b)
    one_hot = _first(data.pipeline(test, info, training=False, batch_size=8, one_hot=True))[1]
    assert tuple(one_hot.shape) == (8, 10)


def test_crop_flip_and_imagenet_augmentations():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4, 40, 48, 3)).astype("uint8")
    info = data.DatasetInfo("toy", 3, (32, 32, 3), 4, 4, (127.0,) * 3, (64.0,) * 3, "imagenet")
    import tensorflow as tf

    raw = tf.data.Dataset.from_tensor_slices((images, np.arange(4) % 3))
    x, _ = _first(data.pipeline(raw, info, training=True, batch_size=4, image_size=32))
    assert tuple(x.shape) == (4, 32, 32, 3)
    x, _ = _first(data.pipeline(raw, info, training=False, batch_size=4, image_size=32))
    assert tuple(x.shape) == (4, 32, 32, 3)
    cifar_info = data.DatasetInfo("toy", 3, (40, 48, 3), 4, 4, (127.0,) * 3, (64.0,) * 3, "crop_flip")
    x, _ = _first(data.pipeline(raw, cifar_info, training=True, batch_size=4))
    assert tuple(x.shape) == (4, 40, 48, 3)


@pytest.mark.parametrize("kwargs,match", [({"batch_size": 0}, "batch_size"),
                                          ({"augmentation": "mixup"}, "augmentation")])
def test_pipeline_bad_arguments(kwargs, match):
    train, _, info = data.load("digits")
    with pytest.raises(ValueError, match=match):
        data.pipeline(train, info, training=True, **kwargs)


def test_class_sorted_training_set_is_shuffled_whole_every_epoch(tmp_path):
    """A training file stored sorted by class: every batch of the first epoch mixes classes.

    20,000 examples, 10 classes in blocks of 2,000: a 10,000-example buffer would give the
    first batches only classes 0..4.
    """
    n, classes = 20_000, 10
    y = np.repeat(np.arange(classes), n // classes)
    x = (np.arange(n)[:, None, None] % 256).astype("uint8") * np.ones((1, 4, 4), "uint8")
    path = tmp_path / "sorted.npz"
    np.savez(path, x=x, y=y)
    train, _, info = data.load(f"npz:{path},{path}")
    assert data.shuffle_buffer_for(train) == n
    batches = data.pipeline(train, info, training=True, batch_size=64, seed=0)
    seen = []
    for _, labels in batches:
        labels = labels.numpy()
        seen.append(labels)
        if len(labels) == 64:  # a uniform batch of 64 holds >= 7 of 10 classes (p > 0.9999)
            assert len(set(labels)) >= 7
    assert sorted(np.concatenate(seen)) == sorted(y)  # one epoch: every example once
    second = np.concatenate([labels.numpy() for _, labels in batches])
    assert not np.array_equal(second, np.concatenate(seen))  # reshuffled every epoch


def test_export_subsets_of_a_class_sorted_file_are_uniform_samples(tmp_path):
    """A test file stored class by class (as the shared CIFAR-10 test .npz): the calibration
    and validation arrays are seeded uniform samples, not its first images."""
    n, classes = 2_000, 10
    y = np.repeat(np.arange(classes), n // classes)
    x = (np.arange(n)[:, None, None] % 256).astype("uint8") * np.ones((1, 4, 4), "uint8")
    path = tmp_path / "sorted.npz"
    np.savez(path, x=x, y=y)
    loaded = data.load(f"npz:{path},{path}")
    calibration, (validation_x, validation_y) = data.datasets_arrays(
        loaded, calibration_samples=100, validation_samples=200)
    assert len(calibration) == 100 and len(validation_y) == 200
    # The first 200 would be class 0 alone; a uniform sample of 200 holds every class
    # (each is missing with probability about 0.9 ** 200 < 1e-9).
    assert set(validation_y.tolist()) == set(range(classes))
    again = data.datasets_arrays(loaded, calibration_samples=100, validation_samples=200)
    np.testing.assert_array_equal(again[1][1], validation_y)  # seeded: the same sample
    np.testing.assert_array_equal(again[0], calibration)
    assert [int(v) for _, v in data.sample(loaded.test, 5_000)] == y.tolist()  # all, in order
    with pytest.raises(ValueError, match="limit"):
        data.sample(loaded.test, 0)


def test_shuffle_buffer_for_streams_and_bad_values():
    unknown = tf.data.Dataset.range(10).filter(lambda v: v > 2)  # cardinality unknown
    assert data.shuffle_buffer_for(unknown) == data.STREAM_SHUFFLE_BUFFER
    train, _, info = data.load("digits")
    assert data.shuffle_buffer_for(train) == info.num_train
    with pytest.raises(ValueError, match="shuffle_buffer must be 'auto' or an int >= 1; received 0"):
        data.pipeline(train, info, training=True, shuffle_buffer=0)


def test_load_returns_named_datasets_that_still_unpack():
    loaded = data.load("digits", image_size=8)
    assert isinstance(loaded, data.Datasets)
    train, test, info = loaded
    assert loaded.info is info and loaded.train is train and loaded.test is test
    assert data.as_datasets((train, test, info)) == loaded


@pytest.mark.parametrize("value", [(1, 2), (1, 2, 3), "abc"])
def test_as_datasets_refuses_other_values(value):
    with pytest.raises(ValueError, match="datasets must be \\(train, test, info\\)"):
        data.as_datasets(value)
