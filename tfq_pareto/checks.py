"""Argument checks shared by the package (NumPy/TensorFlow free)."""

import numbers


def check_bits(name, value, allowed):
    """Returns ``int(value)``; raises ValueError unless ``value`` is an int in ``allowed``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value not in allowed
    ):
        raise ValueError(
            f"{name} must be an int in {min(allowed)}..{max(allowed)}; received {value!r}"
        )
    return int(value)


class ConfigMixin:
    """``from_config``, ``__eq__`` and ``__repr__`` from a ``get_config`` that mirrors ``__init__``."""

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
