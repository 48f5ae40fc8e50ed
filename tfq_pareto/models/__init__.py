"""Model families, plain float tf_keras functional models; quantize them with ``apply``."""

from tfq_pareto.models.resnet_cifar import RESNET_CIFAR_DEPTHS, resnet_cifar

__all__ = ["RESNET_CIFAR_DEPTHS", "resnet_cifar"]
