"""NumPy versions of the Keras gate equations: the independent reference for tfrnn's cells."""

import numpy as np

ACTIVATIONS = {
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "hard_sigmoid": lambda x: np.clip(0.2 * x + 0.5, 0.0, 1.0),
    "relu": lambda x: np.maximum(x, 0.0),
    "linear": lambda x: x,
}


def _split(matrix, parts):
    return np.split(matrix, parts, axis=-1)


def _masked(x, masks, gate, gates):
    """`x` as gate `gate` sees it under dropout: per-gate masks, one shared mask, or none."""
    if not masks:
        return x
    return x * (masks[gate] if len(masks) == gates else masks[0])


def lstm_step(x, h, c, kernel, recurrent_kernel, bias, activation="tanh",
              recurrent_activation="sigmoid", input_masks=(), recurrent_masks=()):
    """Gate order i, f, c, o; returns (h, c)."""
    act, rec = ACTIVATIONS[activation], ACTIVATIONS[recurrent_activation]
    w, u = _split(kernel, 4), _split(recurrent_kernel, 4)
    b = _split(bias, 4) if bias is not None else [0.0] * 4
    z = [
        _masked(x, input_masks, g, 4) @ w[g] + _masked(h, recurrent_masks, g, 4) @ u[g] + b[g]
        for g in range(4)
    ]
    i, f, o = rec(z[0]), rec(z[1]), rec(z[3])
    c = f * c + i * act(z[2])
    return o * act(c), c


def gru_step(x, h, kernel, recurrent_kernel, bias, reset_after=True, activation="tanh",
             recurrent_activation="sigmoid", input_masks=(), recurrent_masks=()):
    """Gate order z, r, h; returns h."""
    act, rec = ACTIVATIONS[activation], ACTIVATIONS[recurrent_activation]
    w, u = _split(kernel, 3), _split(recurrent_kernel, 3)
    if bias is None:
        input_bias, recurrent_bias = [0.0] * 3, [0.0] * 3
    elif reset_after:
        input_bias, recurrent_bias = _split(bias[0], 3), _split(bias[1], 3)
    else:
        input_bias, recurrent_bias = _split(bias, 3), [0.0] * 3
    xs = [_masked(x, input_masks, g, 3) @ w[g] + input_bias[g] for g in range(3)]
    hs = [_masked(h, recurrent_masks, g, 3) for g in range(3)]
    z = rec(xs[0] + hs[0] @ u[0] + recurrent_bias[0])
    r = rec(xs[1] + hs[1] @ u[1] + recurrent_bias[1])
    if reset_after:
        candidate = act(xs[2] + r * (hs[2] @ u[2] + recurrent_bias[2]))
    else:
        candidate = act(xs[2] + (r * hs[2]) @ u[2])
    return z * h + (1.0 - z) * candidate


def simple_step(x, h, kernel, recurrent_kernel, bias, activation="tanh",
                input_masks=(), recurrent_masks=()):
    act = ACTIVATIONS[activation]
    b = bias if bias is not None else 0.0
    return act(_masked(x, input_masks, 0, 1) @ kernel + b + _masked(h, recurrent_masks, 0, 1) @ recurrent_kernel)


def run_sequence(step, inputs, states):
    """A plain Python loop over time: returns (outputs [batch, time, units], final states)."""
    outputs = []
    for t in range(inputs.shape[1]):
        states = step(inputs[:, t], *states)
        states = states if isinstance(states, tuple) else (states,)
        outputs.append(states[0])
    return np.stack(outputs, 1), states
