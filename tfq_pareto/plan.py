"""The per-layer quantization plan: what ``apply`` decided for every layer, in one object.

:func:`tfq_pareto.apply` computes a :class:`QuantizationPlan` once, from the
model after tfmot's layout transforms: for each quantized layer its kind, weight
bits, activation bits, whether it is a first or last layer, and its filters and
fan-in (d = C_in * K_w * K_h, Eq. 6). The quantize registry builds each layer's
config from it; the plan is stored with the QAT model (:func:`plan_of`), written
next to it by :func:`tfq_pareto.save_model` and read back by
:func:`tfq_pareto.load_model`; ``size``, ``summary``, ``memory_footprint`` and
the exporter read it instead of deriving the bits again.

A QAT model that carries no plan (made by tfmot directly, or loaded with plain
``tf_keras.models.load_model``) gets one derived from its quantize configs by
:func:`derive_plan`, the one place that reads bits back from configs.
"""

import collections
import dataclasses
import json

import numpy as np

from tfq_pareto import graph
from tfq_pareto.backend import keras

#: Plan format version (in saved files).
PLAN_VERSION = 1

#: Kinds of planned layers: the three weighted ones, then output-only and the input.
WEIGHTED_KINDS = {"conv": "Conv2D", "depthwise": "DepthwiseConv2D", "dense": "Dense"}
KINDS = tuple(WEIGHTED_KINDS) + ("activation", "input")

#: Attribute of a QAT model holding its plan.
_ATTRIBUTE = "_tfq_pareto_plan"


def kind_of(layer):
    """``"conv"``, ``"depthwise"`` or ``"dense"`` for a weighted layer, else None."""
    layer = graph.unwrap(layer)
    if graph.is_depthwise(layer):  # DepthwiseConv2D, or a Conv2D with one input per group
        return "depthwise"
    if isinstance(layer, keras.layers.Conv2D):
        return "conv"
    if isinstance(layer, keras.layers.Dense):
        return "dense"
    return None


def filters_and_fan_in(layer):
    """``(filters, d)`` of a Conv2D/DepthwiseConv2D/Dense layer: d = C_in * K_w * K_h per filter.

    Depthwise kernels are (kh, kw, c, m): c * m filters of kh * kw weights;
    conv kernels (kh, kw, c_in / groups, c_out); dense kernels (c_in, units).
    """
    layer = graph.unwrap(layer)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        shape = [int(d) for d in layer.depthwise_kernel.shape]
        return shape[-2] * shape[-1], int(np.prod(shape[:-2]))
    shape = [int(d) for d in layer.kernel.shape]
    return shape[-1], int(np.prod(shape[:-1]))


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """The plan of one layer.

    Attributes:
      name: the layer's name in the QAT model.
      kind: one of :data:`KINDS`.
      weight_bits: bits of its kernel (weighted kinds), else None.
      act_bits: bits of the fake-quant on its output, or None when it has none
        (e.g. a conv whose following ReLU quantizes instead).
      first, last: a first / last conv/dense layer (they get ``first_last_bits``).
      filters, fan_in: Eq. (6) terms of weighted kinds, else None.
    """

    name: str
    kind: str
    weight_bits: int = None
    act_bits: int = None
    first: bool = False
    last: bool = False
    filters: int = None
    fan_in: int = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; received {self.kind!r}")

    @property
    def weighted(self):
        return self.kind in WEIGHTED_KINDS

    @property
    def size_bits(self):
        """Eq. (6) term of this layer (0 for layers without weights)."""
        return self.filters * self.fan_in * self.weight_bits if self.weighted else 0


@dataclasses.dataclass(frozen=True)
class QuantizationPlan:
    """Every quantized layer's :class:`LayerPlan`, in model order."""

    layers: tuple

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        names = [l.name for l in self.layers]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"a plan names each layer once; received {duplicated} twice")

    def __iter__(self):
        return iter(self.layers)

    def __len__(self):
        return len(self.layers)

    def __contains__(self, name):
        return any(l.name == name for l in self.layers)

    def __getitem__(self, name):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r} in the plan")

    def get(self, name, default=None):
        return self[name] if name in self else default

    @property
    def weighted(self):
        """The weighted layers' plans, in model order."""
        return [l for l in self.layers if l.weighted]

    @property
    def activation_bits(self):
        """The distinct activation bits of the plan, sorted."""
        return sorted({l.act_bits for l in self.layers if l.act_bits is not None})

    @property
    def common_activation_bits(self):
        """The activation bits most layers' outputs use (the input not counted; ties: the
        higher), or None."""
        counts = collections.Counter(l.act_bits for l in self.layers
                                     if l.act_bits is not None and l.kind != "input")
        if not counts:
            return None
        return max(counts, key=lambda bits: (counts[bits], bits))

    @property
    def size_bits(self):
        """Eq. (6) of the planned model, in bits."""
        return sum(l.size_bits for l in self.layers)

    def to_dict(self):
        return {"version": PLAN_VERSION, "layers": [dataclasses.asdict(l) for l in self.layers]}

    @classmethod
    def from_dict(cls, value):
        if not isinstance(value, dict) or value.get("version") != PLAN_VERSION:
            raise ValueError(f"not a version-{PLAN_VERSION} quantization plan: {str(value)[:80]!r}")
        return cls(tuple(LayerPlan(**layer) for layer in value["layers"]))

    def to_json(self):
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(json.loads(text))


def attach(model, plan):
    """Stores ``plan`` with ``model`` (read back by :func:`plan_of`); returns ``model``."""
    names = {l.name for l in model.layers} | {graph.unwrap(l).name for l in model.layers}
    missing = [l.name for l in plan if l.name not in names]
    if missing:
        raise ValueError(f"the plan names layers {missing[:5]} that model {model.name!r} lacks")
    object.__setattr__(model, _ATTRIBUTE, plan)  # plain attribute: not tracked by Keras
    return model


def plan_of(model):
    """The :class:`QuantizationPlan` of a QAT model: the stored one, else :func:`derive_plan`'s."""
    plan = getattr(model, _ATTRIBUTE, None)
    return plan if plan is not None else derive_plan(model)


def _output_bits(config, layer):
    bits = [getattr(q, "num_bits", None) for q in config.get_output_quantizers(layer)]
    bits += [getattr(q, "num_bits", None) for _, q in config.get_activations_and_quantizers(layer)]
    bits = [b for b in bits if b is not None]
    return int(max(bits)) if bits else None


def _weight_bits(config, layer):
    if getattr(config, "num_bits", None) is not None:
        return int(config.num_bits)
    quantizers = [q for _, q in config.get_weights_and_quantizers(layer)]
    bits = getattr(quantizers[0], "num_bits", None) if quantizers else None
    return int(bits) if bits is not None else None


def derive_plan(model):
    """A plan read back from a QAT model's quantize configs (for models without a stored plan).

    Weighted layers whose kernel tfmot leaves float (no weight quantizer) are
    not in the plan; :func:`tfq_pareto.size.layer_sizes` counts them at 32 bits.
    """
    first, last = graph.first_and_last_layers(model) if graph.is_graph_model(model) else ((), ())
    # (names of the model's own layers: the QAT wrappers')
    layers = []
    for wrapper in model.layers:
        inner = graph.unwrap(wrapper)
        if hasattr(wrapper, "quantize_config"):
            config = wrapper.quantize_config
            kind = kind_of(inner)
            act = _output_bits(config, inner)
            if kind is not None:
                bits = _weight_bits(config, inner)
                if bits is None:
                    continue
                filters, fan_in = filters_and_fan_in(inner)
                layers.append(LayerPlan(inner.name, kind, bits, act, wrapper.name in first,
                                        wrapper.name in last, filters, fan_in))
            elif act is not None:
                layers.append(LayerPlan(inner.name, "activation", act_bits=act))
        elif hasattr(wrapper, "quantizer") and getattr(wrapper.quantizer, "num_bits", None):
            layers.append(LayerPlan(wrapper.name, "input", act_bits=int(wrapper.quantizer.num_bits)))
    return QuantizationPlan(tuple(layers))
