"""Shared test helpers: caller contexts, fixed-seed data, tf-keras twins with copied weights."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

CALLERS = ("eager", "function", "jit")


def call_in(caller, fn, *args):
    """Runs `fn(*args)` eagerly, inside a plain `tf.function`, or inside a jit_compile one."""
    import tensorflow as tf  # here, not above: the xdist controller loads this file but runs no test

    if caller == "eager":
        return fn(*args)
    return tf.function(fn, jit_compile=(caller == "jit"), autograph=False)(*args)


def random_array(seed, *shape):
    return np.random.RandomState(seed).standard_normal(shape).astype(np.float32)


def random_mask(seed, batch, timesteps):
    """A mask with every hard case: a leading masked step, a gap, an all-masked row."""
    mask = np.random.RandomState(seed).rand(batch, timesteps) > 0.35
    mask[0, 0] = False
    mask[0, -1] = True
    if batch > 1:
        mask[1, :] = False
    if batch > 2 and timesteps > 3:
        mask[2, :] = True
        mask[2, 1:3] = False
    return mask


def assert_close(actual, expected, atol, what=""):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    error = float(np.max(np.abs(actual - expected))) if actual.size else 0.0
    assert error <= atol, f"{what}: max abs error {error:.3g} > {atol}"
