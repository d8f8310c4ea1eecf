"""Packaging for tfrnn: Keras-contract recurrent layers as tf.Modules compiled with XLA."""

import setuptools

setuptools.setup(
    name="tfrnn",
    version="0.1.0",
    description=(
        "The Keras RNN layer contract as plain tf.Modules whose time loop "
        "compiles with XLA."
    ),
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["tfrnn", "tfrnn.*"]) + ["tfrnn_tools"],
    # The command-line tools live in tools/ and install as the tfrnn_tools package.
    package_dir={"tfrnn_tools": "tools"},
    install_requires=[
        "tensorflow==2.21.0",
        "tf-keras==2.21.0",
        "numpy",
        "ai-edge-litert==2.3.0",
        # TF Serving's own protos for warm-up requests; it needs nothing TensorFlow lacks.
        "tensorflow-serving-api==2.21.0",
    ],
    extras_require={
        "test": ["pytest", "pytest-xdist==3.8.0"],
        # Benchmarks only: PyTorch as a peer to compare against, never a dependency.
        "benchmark": ["torch==2.13.0", "matplotlib"],
    },
    entry_points={
        "console_scripts": [
            "tfrnn-demo = tfrnn_tools.main:main",
            "tfrnn-export = tfrnn_tools.export_savedmodel:main",
            "tfrnn-convert-tflite = tfrnn_tools.convert_tflite:main",
            "tfrnn-run-saved-model = tfrnn_tools.run_saved_model:main",
            "tfrnn-benchmark = tfrnn_tools.benchmark:main",
        ]
    },
)
