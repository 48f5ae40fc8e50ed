"""tfq_pareto.backend: the environment TensorFlow is imported with."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_PROBE = ("import os, tfq_pareto, tensorflow; "
          "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], os.environ['TF_USE_LEGACY_KERAS'])")


def _probe(extra_env):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env.update(extra_env, PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                          text=True, check=True, timeout=300)
    return done.stdout.split()


def test_onednn_is_off_unless_the_user_chose():
    """oneDNN's CPU kernels crashed training on this project's AMD machines (see backend)."""
    assert _probe({}) == ["0", "1"]
    assert _probe({"TF_ENABLE_ONEDNN_OPTS": "1"}) == ["1", "1"]
