"""tfq_pareto_cli: the ``tfq-pareto`` command line and the demo.

The composition root: the one package that imports both ``tfq_pareto`` (the
library) and ``tflite_export`` (the exporter built on it). Neither of those
imports this package, and ``tfq_pareto`` never imports ``tflite_export``
(``tests/test_architecture.py`` enforces both).
"""

from tfq_pareto_cli.cli import main

__all__ = ["main"]
