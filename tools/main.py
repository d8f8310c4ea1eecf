"""tfrnn's main job: an LSTM compiled with XLA, checked against tf-keras with the same weights.

Run: `python tools/main.py`. Prints the shapes of the outputs and states, the largest
difference from `tf_keras.layers.LSTM` holding the same weights, and the time per call.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: quiet C++ logs

import numpy as np
import tensorflow as tf
import tf_keras

import tfrnn


def parity_with_tf_keras(batch: int, timesteps: int, features: int, units: int) -> float:
    """Runs tfrnn's LSTM and tf-keras' LSTM with the same weights; returns the max error."""
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal([batch, timesteps, features]).astype(np.float32)
    mask = rng.random([batch, timesteps]) > 0.2

    cell = tfrnn.LSTMCell(units, seed=0)
    rnn = tfrnn.RNN(cell, return_sequences=True, return_state=True)

    @tf.function(input_signature=[tf.TensorSpec([None, None, features]), tf.TensorSpec([None, None], tf.bool)])
    def serve(inputs, mask):
        return rnn(inputs, mask=mask)

    start = time.perf_counter()
    outputs, h, c = serve(inputs, mask)
    first_call = time.perf_counter() - start
    print(f"tfrnn.RNN(LSTMCell({units})) under XLA: outputs {outputs.shape}, h {h.shape}, c {c.shape}")

    keras_lstm = tf_keras.layers.LSTM(units, return_sequences=True, return_state=True)
    keras_lstm.build((None, timesteps, features))
    keras_lstm.set_weights(cell.get_weights())
    expected = keras_lstm(inputs, mask=mask)
    error = max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip((outputs, h, c), expected))
    print(f"max abs difference from tf_keras.layers.LSTM with the same weights: {error:.2e}")

    timings = []
    for _ in range(20):
        start = time.perf_counter()
        serve(inputs, mask)[0].numpy()
        timings.append(time.perf_counter() - start)
    print(
        f"first call (trace + XLA compile) {first_call * 1e3:.0f} ms, "
        f"then {np.median(timings) * 1e3:.2f} ms per call (median of 20)"
    )
    return error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--timesteps", type=int, default=20)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--units", type=int, default=32)
    args = parser.parse_args(argv)
    error = parity_with_tf_keras(args.batch, args.timesteps, args.features, args.units)
    if error > 1e-5:
        print("FAILED: tfrnn and tf-keras disagree", file=sys.stderr)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
