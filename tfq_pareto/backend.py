"""The single module that decides which Keras the package uses.

tfmot 0.8 works only with Keras 2, shipped as ``tf_keras``. ``TF_USE_LEGACY_KERAS``
must be set before TensorFlow is first imported, so every other module of the
package imports ``keras``, ``tf`` and ``tfmot`` from here and never ``import keras``.
"""

import os
import sys
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TF 2.21's oneDNN CPU kernels crash the process (SIGSEGV / abort inside a training
# step) on an AMD EPYC with AVX-512 BF16/VNNI: `tfq-pareto demo --tiny` died so on
# every run, and ran with TF_ENABLE_ONEDNN_OPTS=0. TensorFlow's plain Eigen kernels
# are used unless the user sets the variable before importing this package.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

#: Import-time lines of TensorFlow's C++ logging that carry no information for
#: users (oneDNN notice, missing CUDA on CPU machines). TF 2.21 writes them
#: through absl before TF_CPP_MIN_LOG_LEVEL applies, so they are filtered here.
_IMPORT_NOISE = ("I0000 ", "WARNING: All log messages before absl::InitializeLog()",
                 "To enable the following instructions:")
#: The CUDA probe's complaint on machines without a GPU (an E-level line, but harmless).
_NO_GPU_NOISE = "failed call to cuInit"


def _import_tensorflow():
    """Imports TF, tf_keras and tfmot, dropping TF's import-time INFO lines from stderr."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (e.g. some notebooks): import plainly
        saved = None
    sink = tempfile.TemporaryFile(mode="w+b") if saved is not None else None
    if sink is not None:
        os.dup2(sink.fileno(), 2)
    try:
        import tensorflow  # pylint: disable=import-outside-toplevel
        import tensorflow_model_optimization  # pylint: disable=import-outside-toplevel
        import tf_keras  # pylint: disable=import-outside-toplevel

        # Probe the devices now, while stderr is filtered, rather than at the first op.
        tensorflow.config.list_physical_devices()
    finally:
        if sink is not None:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode(errors="replace").splitlines(keepends=True):
                if not line.startswith(_IMPORT_NOISE) and _NO_GPU_NOISE not in line:
                    sys.stderr.write(line)
            sink.close()
    return tensorflow, tf_keras, tensorflow_model_optimization


tf, keras, tfmot = _import_tensorflow()

__all__ = ["tf", "keras", "tfmot"]
