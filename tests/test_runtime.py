"""tflite_export.runtime: TFLM interpreter creation without unpacking the whole model."""

import sys

import numpy as np
import tensorflow as tf

from tflite_export import runtime


def _stateful_tflite(n_variables):
    """A model with ``n_variables`` resource variables, each accumulating the input."""

    class Accumulators(tf.Module):
        def __init__(self):
            super().__init__()
            self.slots = [tf.Variable(tf.zeros([1, 4]), name=f"slot{i}")
                          for i in range(n_variables)]

        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
        def __call__(self, x):
            total = x * 0.0
            for i, slot in enumerate(self.slots):
                slot.assign_add(x * float(i + 1))
                total += slot.read_value()
            return total

    module = Accumulators()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.__call__.get_concrete_function()], module)
    converter.experimental_enable_resource_variables = True
    return converter.convert()


def _tflm_count(model_bytes):
    """The count TFLM's own Python wrapper computes (its full unpacking of the model)."""
    from tflite_micro import runtime as micro  # pylint: disable=import-outside-toplevel

    return sys.modules[micro.Interpreter.__module__].count_resource_variables(model_bytes)


def test_the_lazy_count_equals_tflms_own_count():
    for n in (0, 1, 3):
        data = _stateful_tflite(n) if n else tf.lite.TFLiteConverter.from_concrete_functions(
            [tf.function(lambda x: x + 1.0).get_concrete_function(
                tf.TensorSpec([1, 4], tf.float32))]).convert()
        assert runtime.resource_variable_count(data) == _tflm_count(data) == n


def test_an_interpreter_made_with_the_lazy_count_keeps_its_variables():
    """Three accumulators, two invokes on 2.0: (1 + 2 + 3) x 2 x 2.0 = 24, by hand."""
    interpreter = runtime._micro_interpreter(_stateful_tflite(3), 1 << 16)  # pylint: disable=protected-access
    for _ in range(2):
        interpreter.set_input(np.full((1, 4), 2.0, np.float32), 0)
        interpreter.invoke()
    np.testing.assert_allclose(interpreter.get_output(0), np.full((1, 4), 24.0))
    # The wrapper's own counter is back in place afterwards.
    from tflite_micro import runtime as micro  # pylint: disable=import-outside-toplevel

    counter = micro.Interpreter.__init__.__globals__["count_resource_variables"]
    assert counter is not runtime.resource_variable_count
