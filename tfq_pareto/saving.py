"""Saving and loading QAT models.

Supported formats: HDF5 (``.h5``/``.hdf5``) and the TensorFlow SavedModel
directory (any other path without an extension). The Keras v3 ``.keras`` zip
format is not supported: tfmot's ``QuantizeLayer`` and wrappers track their
variables in a way that format cannot restore, so loading fails ("expected 5
variables, but received 3").

The quantization plan (:mod:`tfq_pareto.plan`) of a QAT model is saved with it:
as the ``tfq_pareto_plan`` attribute of the HDF5 file's root, or as
``tfq_pareto_plan.json`` in the SavedModel directory; :func:`load_model`
attaches it to the loaded model.
"""

import os
import warnings

from tfq_pareto import plan as plan_lib
from tfq_pareto.backend import keras
from tfq_pareto.scheme import quantize_scope

#: Where the plan goes: the HDF5 root attribute, and the file in a SavedModel directory.
PLAN_ATTRIBUTE = "tfq_pareto_plan"
PLAN_FILE = "tfq_pareto_plan.json"

#: Extensions of the HDF5 format.
H5_EXTENSIONS = (".h5", ".hdf5")

_SUPPORTED = "'.h5' / '.hdf5' files or a SavedModel directory (a path without extension)"


def _format_for(path):
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext in H5_EXTENSIONS:
        return "h5"
    if ext == "":
        return "tf"
    raise ValueError(
        f"unsupported format {ext!r} for a quantization-aware model ({path!r}); "
        f"supported: {_SUPPORTED}. The Keras v3 '.keras' format cannot restore tfmot's "
        "quantizer variables."
    )


def save_model(model, path):
    """Saves a QAT (or float) tf_keras model as HDF5 or SavedModel, chosen by ``path``.

    Raises:
      ValueError: for ``.keras`` or any other extension, before anything is written.
    """
    save_format = _format_for(path)
    with warnings.catch_warnings():
        # HDF5 is chosen on purpose (see the module docstring); keep tf_keras quiet about it.
        warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file")
        model.save(os.fspath(path), save_format=save_format)
    if any(hasattr(l, "quantize_config") for l in model.layers):
        _write_plan(plan_lib.plan_of(model), os.fspath(path), save_format)


def _write_plan(plan, path, save_format):
    if save_format == "h5":
        import h5py  # pylint: disable=import-outside-toplevel

        with h5py.File(path, "a") as f:
            f.attrs[PLAN_ATTRIBUTE] = plan.to_json()
    else:
        with open(os.path.join(path, PLAN_FILE), "w", encoding="utf-8") as f:
            f.write(plan.to_json())


def _read_plan(path):
    """The plan saved at ``path``, or None (a model saved without one)."""
    if _format_for(path) == "h5":
        import h5py  # pylint: disable=import-outside-toplevel

        with h5py.File(path, "r") as f:
            text = f.attrs.get(PLAN_ATTRIBUTE)
        if text is None:
            return None
        return plan_lib.QuantizationPlan.from_json(text if isinstance(text, str) else text.decode())
    plan_path = os.path.join(path, PLAN_FILE)
    if not os.path.exists(plan_path):
        return None
    with open(plan_path, encoding="utf-8") as f:
        return plan_lib.QuantizationPlan.from_json(f.read())


def load_model(path, compile=True):  # pylint: disable=redefined-builtin
    """Loads a model saved by :func:`save_model` (or ``model.save``) inside :func:`quantize_scope`.

    With ``compile=True`` the optimizer is restored too, including the Appendix A
    learning-rate schedule (:class:`tfq_pareto.training.WarmupCosine`).
    """
    from tfq_pareto.training import L2SGD, WarmupCosine  # pylint: disable=import-outside-toplevel

    _format_for(path)
    if not os.path.exists(os.fspath(path)):
        raise FileNotFoundError(f"no model at {os.fspath(path)!r}")
    with quantize_scope({"WarmupCosine": WarmupCosine, "L2SGD": L2SGD}):
        model = keras.models.load_model(os.fspath(path), compile=compile)
    plan = _read_plan(os.fspath(path))
    return plan_lib.attach(model, plan) if plan is not None else model
