"""Argument checks shared by the package (NumPy/TensorFlow free).

Each check returns the value it accepts, or raises ValueError with the name,
what is allowed and the value received: ``batch_size must be an int >= 1;
received 0``. A ``bool`` is never a number here (``True`` is not a width).
"""

import math
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


def check_int(name, value, minimum=1):
    """Returns ``int(value)``; raises ValueError unless ``value`` is an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; received {value!r}")
    return int(value)


def check_positive(name, value, *, finite=False):
    """Returns ``value``; raises ValueError unless it is a number > 0 (and finite if asked)."""
    ok = (not isinstance(value, bool) and isinstance(value, numbers.Real) and value > 0
          and (not finite or math.isfinite(value)))
    if not ok:
        what = "a finite number > 0" if finite else "a number > 0"
        raise ValueError(f"{name} must be {what}; received {value!r}")
    return value


def check_fraction(name, value):
    """Returns ``value``; raises ValueError unless it is a number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
        raise ValueError(f"{name} must be a number in (0, 1]; received {value!r}")
    return value


def _frozen(value):
    """A hashable copy of a config value: dicts, lists and sets become (sorted) tuples."""
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return tuple(sorted(_frozen(v) for v in value))
    return value


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
        return hash((type(self).__name__, _frozen(self.get_config())))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
