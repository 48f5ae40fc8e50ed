"""``python -m tfq_pareto_cli COMMAND ...``: the same as ``tfq-pareto COMMAND ...``."""

import sys

from tfq_pareto_cli.cli import main

sys.exit(main())
