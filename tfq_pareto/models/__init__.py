"""Model families: plain float tf_keras functional models; quantize them with ``apply``.

Every builder takes ``width_multiplier`` (every channel count times it) and
``num_classes``; the model is named after its configuration.
"""

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

__all__ = [
    "FAMILIES",
    "RESNET_CIFAR_DEPTHS",
    "VGG11_VARIANTS",
    "inv_resnet26",
    "mobilenet_v2",
    "mobilenet_v2_cifar",
    "resnet50",
    "resnet_cifar",
    "vgg11",
]
