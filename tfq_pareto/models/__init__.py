"""Model families: plain float tf_keras functional models; quantize them with ``apply``.

Every builder takes ``width_multiplier`` (every channel count times it) and
``num_classes``; the model is named after its configuration.
"""

import functools

from tfq_pareto.models.inv_resnet import inv_resnet26
from tfq_pareto.models.mobilenet_v2 import mobilenet_v2, mobilenet_v2_cifar
from tfq_pareto.models.resnet50 import resnet50
from tfq_pareto.models.resnet_cifar import RESNET_CIFAR_DEPTHS, resnet_cifar
from tfq_pareto.models.vgg import VGG11_VARIANTS, vgg11

#: Family name -> builder, for the command line and the search.
FAMILIES = {
    "resnet_cifar": resnet_cifar,
    "vgg11": vgg11,
    "mobilenet_v2_cifar": mobilenet_v2_cifar,
    "inv_resnet26": inv_resnet26,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
}



def family_builder(model, *, depth=None, variant=None, dw_fan_in=None, num_classes=None,
                   input_shape=None):
    """``builder(width_multiplier)`` for a family name of :data:`FAMILIES` and its options.

    The one lookup from a family name to a builder (the command line, ``experiment``
    and the search use it). Options that a family does not take are refused.

    Args:
      model: a key of :data:`FAMILIES`.
      depth: depth of ``resnet_cifar`` (default 20); other families refuse it.
      variant: ``vgg11`` variant (Table 6); other families refuse it.
      dw_fan_in: ``vgg11``'s ``(C, K)`` depthwise fan-in (Table 2); other families refuse it.
      num_classes: classifier outputs (default: the family's).
      input_shape: image shape (default: the family's).
    """
    if model not in FAMILIES:
        raise ValueError(f"model must be one of {sorted(FAMILIES)}; received {model!r}")
    kwargs = {}
    for name, value, family in (("depth", depth, "resnet_cifar"), ("variant", variant, "vgg11"),
                                ("dw_fan_in", dw_fan_in, "vgg11")):
        if value is None:
            continue
        if model != family:
            raise ValueError(f"{name} applies to model {family!r} only; received model "
                             f"{model!r} with {name}={value!r}")
        kwargs[name] = value
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if input_shape is not None:
        kwargs["input_shape"] = tuple(input_shape)
    return functools.partial(_build, FAMILIES[model], **kwargs)


def _build(build, width_multiplier, **kwargs):
    return build(width_multiplier=width_multiplier, **kwargs)


__all__ = [
    "FAMILIES",
    "family_builder",
    "RESNET_CIFAR_DEPTHS",
    "VGG11_VARIANTS",
    "inv_resnet26",
    "mobilenet_v2",
    "mobilenet_v2_cifar",
    "resnet50",
    "resnet_cifar",
    "vgg11",
]
