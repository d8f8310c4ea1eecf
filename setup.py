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
    packages=setuptools.find_packages(include=["tfrnn", "tfrnn.*"]),
    install_requires=[
        "tensorflow==2.21.0",
        "tf-keras==2.21.0",
        "numpy",
    ],
    extras_require={
        "test": ["pytest"],
    },
)
