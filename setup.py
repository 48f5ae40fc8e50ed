"""Install with ``pip install -e .`` (add ``[test]`` for the test suite)."""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "tensorflow==2.21.*",
    "tf-keras==2.21.*",
    "tensorflow-model-optimization==0.8.1",
    "numpy",
    "absl-py",
    "scipy",  # Spearman rank correlation (search.rank_agreement)
    "scikit-learn",  # ships the 8x8 digits: the embedded, download-free dataset
    "tensorflow-datasets",
    "keras-tuner==1.4.8",
    "tensorboard",
    "matplotlib",
    # Export: the TFLite Micro interpreter + its compression tool, and LiteRT.
    "tflite-micro==0.dev20261023182759",
    "ai-edge-litert",
]

EXTRAS = {
    "test": ["pytest", "pytest-xdist", "hypothesis"],
}

setup(
    name="tfq_pareto",
    version="0.1.0",
    description=(
        "Pareto-efficient quantized CNNs (Chin et al.): per-filter 1/2/b-bit "
        "quantization-aware training, DualPrecision and model size for tf_keras"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tfq_pareto", "tfq_pareto.*", "tflite_export", "tflite_export.*",
                                    "tfq_pareto_cli", "tfq_pareto_cli.*"]),
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["tfq-pareto=tfq_pareto_cli.cli:main"]},
)
