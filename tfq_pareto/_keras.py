"""The single module that decides which Keras the package uses.

tfmot 0.8 works only with Keras 2, shipped as ``tf_keras``. ``TF_USE_LEGACY_KERAS``
must be set before TensorFlow is first imported, so every other module of the
package imports ``keras``, ``tf`` and ``tfmot`` from here and never ``import keras``.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402

__all__ = ["tf", "keras", "tfmot"]
