"""What the two adapters' ConvLSTM tests share: sizes, the option matrix, a layer pair with the
same weights, and the comparison of outputs and gradients against the Keras twin."""

import tensorflow as tf

from conftest import assert_close, random_array, random_mask
from matrix import all_pairs

BATCH, TIME, CHANNELS, FILTERS = 2, 3, 2, 2
SPATIAL = {1: [5], 2: [5, 5], 3: [3, 4, 3]}
KERNEL = {1: 2, 2: (2, 3), 3: 2}  # not square in 2-D: a transposed layout would show
OPTIONS = {
    "rank": (1, 2, 3),
    "padding": ("valid", "same"),
    "strides": (1, 2),
    "dilation_rate": (1, 2),
    "return_sequences": (True, False),
    "return_state": (True, False),
    "go_backwards": (False, True),
    "mask": (False, True),
    "initial_state": (False, True),
    "unroll": (False, True),
    "caller": ("eager", "function"),
}


def matrix(allowed=lambda case: True):
    """All pairs of `OPTIONS`, without strides > 1 with dilation > 1 (Keras refuses it)."""
    return all_pairs(OPTIONS, allowed=lambda case: not (case["strides"] > 1 and case["dilation_rate"] > 1) and allowed(case))


def make_pair(ours_class, theirs_class, case, **options):
    """`(ours, theirs)` built, with the same weights (a non-zero bias); ours XLA-compiled only
    with `case["jit"]`."""
    rank = case["rank"]
    options = dict(
        padding=case["padding"], strides=case["strides"], dilation_rate=case["dilation_rate"],
        return_sequences=case["return_sequences"], return_state=case["return_state"],
        go_backwards=case["go_backwards"], **options,
    )  # fmt: skip
    theirs = theirs_class(FILTERS, KERNEL[rank], **options)
    ours = ours_class(FILTERS, KERNEL[rank], unroll=case.get("unroll", False), jit_compile=case.get("jit", False), **options)
    shape = tf.TensorShape((BATCH if options.get("stateful") else None, TIME, *SPATIAL[rank], CHANNELS))
    assert ours.compute_output_shape(shape) == theirs.compute_output_shape(shape)  # unbuilt
    theirs.build(shape)
    ours.build(shape)
    weights = theirs.get_weights()
    weights[2] = random_array(9, *weights[2].shape) * 0.5
    theirs.set_weights(weights)
    ours.set_weights(weights)
    return ours, theirs


def state_shape(case):
    """`[*out_spatial, filters]`, by Keras' formula for a convolution's output size."""
    rank, padding, stride, dilation = case["rank"], case["padding"], case["strides"], case["dilation_rate"]
    kernel = KERNEL[rank] if isinstance(KERNEL[rank], tuple) else (KERNEL[rank],) * rank
    if padding == "same":
        return [-(-n // stride) for n in SPATIAL[rank]] + [FILTERS]
    return [(n - (k - 1) * dilation - 1) // stride + 1 for n, k in zip(SPATIAL[rank], kernel)] + [FILTERS]


def results(layer, inputs, mask, initial_state, caller):
    """`(outputs, gradients for [inputs, *weights])` of a fixed weighted sum of the outputs."""

    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = tf.nest.flatten(layer(x, mask=mask, initial_state=initial_state))
            loss = sum(tf.reduce_sum(o * random_array(20 + i, *o.shape)) for i, o in enumerate(outputs))
        return outputs, tape.gradient(loss, [x] + list(layer.trainable_weights))

    run = tf.function(run, autograph=False) if caller == "function" else run
    outputs, gradients = run(tf.constant(inputs))
    return [o.numpy() for o in outputs], [g.numpy() for g in gradients]


def check_matches(ours, theirs, case):
    """Ours (called as `case["caller"]` says) equals the Keras twin (eager): outputs 1e-5,
    gradients 1e-4."""
    inputs = random_array(1, BATCH, TIME, *SPATIAL[case["rank"]], CHANNELS)
    mask = tf.constant(random_mask(2, BATCH, TIME)) if case["mask"] else None
    initial_state = None
    if case["initial_state"]:
        initial_state = [tf.constant(random_array(3 + i, BATCH, *state_shape(case))) for i in range(2)]
    expected = results(theirs, inputs, mask, initial_state, "eager")
    actual = results(ours, inputs, mask, initial_state, case["caller"])
    assert len(actual[0]) == len(expected[0]) == (3 if case["return_state"] else 1)
    for i, (a, e) in enumerate(zip(actual[0], expected[0])):
        assert_close(a, e, 1e-5, f"output {i}")
    for name, a, e in zip(("inputs", "kernel", "recurrent_kernel", "bias"), *[r[1] for r in (actual, expected)]):
        assert_close(a, e, 1e-4, f"d {name}")


def check_stateful_calls(ours, theirs, rank, reset):
    """Two calls in a row (the second from the first's final states), then `reset` on both."""
    inputs = random_array(3, BATCH, TIME, *SPATIAL[rank], CHANNELS)
    for call in range(2):
        for i, (a, e) in enumerate(zip(ours(inputs), theirs(inputs))):
            assert_close(a, e, 1e-5, f"call {call} output {i}")
    getattr(ours, reset)()
    getattr(theirs, reset)()
    assert_close(ours(inputs)[0], theirs(inputs)[0], 1e-5, f"after {reset}")
