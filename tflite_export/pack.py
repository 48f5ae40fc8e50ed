"""Packing: every filter of b < 8 bits LUT-compressed with b-bit indices (TFLM compression)."""

import contextlib
import io
import warnings

from tflite_export import flatbuffer


def pack(int8_bytes, layers, filter_tensors=None):
    """The packed model: each layer of ``layers`` below 8 bits LUT-packed on its channel axis.

    Uses TFLite Micro's compression tool (``tflite_micro.compression``): one value
    table per output channel, b-bit indices, a DECODE op in front of the filter op.

    Args:
      int8_bytes: the int8 model (bytes or :class:`tflite_export.flatbuffer.ParsedModel`).
      layers: the manifest's layer rows (``bits``, ``tensor``, ``op`` per layer).
      filter_tensors: ``{layer name: (tensor index, ...)}`` when the filters are
        elsewhere than ``layer["tensor"]`` (a model split by
        :func:`tflite_export.split.split_filters`: one tensor per channel group).

    Returns:
      the packed model bytes (the int8 bytes unchanged when no layer is below 8 bits).
    """
    from tflite_micro import compression  # pylint: disable=import-outside-toplevel
    from tflite_micro.tensorflow.lite.micro.compression import spec  # pylint: disable=import-outside-toplevel

    data = flatbuffer.parse(int8_bytes).data
    builder = compression.SpecBuilder()
    packed_any = False
    for layer in layers:
        if layer["bits"] >= 8:
            continue
        tensors = (filter_tensors or {}).get(layer["name"], (layer["tensor"],))
        for tensor in tensors:
            builder.add_tensor(0, tensor).with_lut(
                layer["bits"], spec.PerChannel(flatbuffer.FILTER_OPS[layer["op"]]))
        packed_any = True
    if not packed_any:
        return data
    # The compressor prints a note when fewer bits would do and warns when a tiny
    # tensor grows; both are reported in the manifest instead.
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        return bytes(compression.compress(data, builder.build()))
