"""Regenerates the golden exports in `saved_models/`, deliberately.

    python tools/regenerate_golden.py --overwrite

Each golden model (`MODELS` below: LSTM, GRU, SimpleRNN, stacked, stateful, masked) is built
with fixed seeds, exported with `tfrnn.export.export_saved_model` to
`saved_models/<name>/savedmodel`, converted with `tfrnn.tflite.convert` to
`saved_models/<name>/model.tflite`, and its inputs, weights and expected outputs are saved
to `saved_models/<name>/io.npz`:

* `inputs` (and `mask`), `weights/<i>` (the model's weights in `get_weights` order);
* `serving/<output>`: `serving_default` on the inputs (a stateful model: `serving2/<output>`
  for a second call, which starts from the first call's states);
* `step/<output>`: the inputs streamed through `step` one timestep at a time.

`tests/test_golden.py` loads every artifact and checks it reproduces these, and that the
current code with the stored weights does too, so a change that breaks loading or changes
the numerics of models already exported fails CI. Existing goldens are replaced only with
`--overwrite`; commit the result with a message that says why they changed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfrnn  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN_DIR = os.path.join(ROOT, "saved_models")
BATCH, TIME, FEATURES = 2, 5, 3

# name -> (cells as (class name, arguments), RNN options, whether the signatures take a mask)
MODELS = {
    "lstm": ([("LSTMCell", {"units": 4})], {"return_sequences": True}, False),
    "gru": ([("GRUCell", {"units": 4})], {}, False),
    "simple_rnn": ([("SimpleRNNCell", {"units": 4})], {"return_sequences": True, "return_state": True}, False),
    "stacked": ([("LSTMCell", {"units": 4}), ("GRUCell", {"units": 3})], {"return_sequences": True}, False),
    "stateful": ([("LSTMCell", {"units": 4})], {"return_sequences": True, "stateful": True}, False),
    "masked": ([("GRUCell", {"units": 4, "reset_after": False})], {"return_sequences": True}, True),
}


def build(name: str, weights=None) -> tfrnn.RNN:
    """The golden model `name`, with its seeded weights or the given ones."""
    cells, options, _ = MODELS[name]
    made = [getattr(tfrnn, kind)(**arguments, seed=index) for index, (kind, arguments) in enumerate(cells)]
    rnn = tfrnn.RNN(made if len(made) > 1 else made[0], **options)
    rnn.build([BATCH, None, FEATURES])
    if weights is not None:
        for cell in made:
            count = len(cell.weights)
            cell.set_weights(weights[:count])
            weights = weights[count:]
    return rnn


def model_weights(rnn: tfrnn.RNN) -> list[np.ndarray]:
    cells = rnn.cell.cells if isinstance(rnn.cell, tfrnn.StackedRNNCells) else [rnn.cell]
    return [w for cell in cells for w in cell.get_weights()]


def golden_inputs(name: str) -> dict:
    rng = np.random.default_rng(sorted(MODELS).index(name))
    inputs = {"inputs": rng.standard_normal([BATCH, TIME, FEATURES]).astype(np.float32)}
    if MODELS[name][2]:
        mask = np.ones([BATCH, TIME], bool)
        mask[0, 3:] = False
        mask[1, 1] = False
        inputs["mask"] = mask
    return inputs


def expected_outputs(directory: str, inputs: dict, stateful: bool) -> dict:
    """What the exported SavedModel gives on `inputs` (see the module docstring)."""
    loaded = tf.saved_model.load(directory)
    serving = loaded.signatures["serving_default"]
    feed = {k: tf.constant(v) for k, v in inputs.items()}
    expected = {f"serving/{k}": v.numpy() for k, v in serving(**feed).items()}
    if stateful:
        expected.update({f"serving2/{k}": v.numpy() for k, v in serving(**feed).items()})
        loaded.signatures["reset_state"]()
    states = loaded.signatures["initial_state"](batch_size=tf.constant(BATCH))
    outputs = []
    for t in range(TIME):
        step_feed = {"inputs": feed["inputs"][:, t], **states}
        if "mask" in feed:
            step_feed["mask"] = feed["mask"][:, t]
        result = loaded.signatures["step"](**step_feed)
        outputs.append(result.pop("outputs").numpy())
        states = result
    expected["step/outputs"] = np.stack(outputs, 1)
    expected.update({f"step/{k}": v.numpy() for k, v in states.items()})
    return expected


def regenerate(name: str, out_dir: str) -> None:
    rnn = build(name)
    inputs = golden_inputs(name)
    mask = MODELS[name][2]
    target = os.path.join(out_dir, name)
    staging = tempfile.mkdtemp(prefix=f".{name}.", dir=out_dir)
    try:
        saved = os.path.join(staging, "savedmodel")
        tfrnn.export.export_saved_model(
            rnn, saved, mask=mask, sample_inputs=inputs["inputs"], sample_mask=inputs.get("mask"),
            tflite_batch_size=BATCH, log=print,
        )
        tfrnn.tflite.convert(saved, os.path.join(staging, "model.tflite"), log=print)
        expected = expected_outputs(saved, inputs, rnn.stateful)
        weights = {f"weights/{i}": w for i, w in enumerate(model_weights(rnn))}
        np.savez(os.path.join(staging, "io.npz"), **inputs, **weights, **expected)
        if os.path.exists(target):
            shutil.rmtree(target)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=GOLDEN_DIR)
    parser.add_argument("--only", nargs="+", choices=sorted(MODELS), help="regenerate these only")
    parser.add_argument("--overwrite", action="store_true", help="replace existing goldens")
    args = parser.parse_args(argv)
    names = args.only or sorted(MODELS)
    existing = [n for n in names if os.path.exists(os.path.join(args.out, n))]
    if existing and not args.overwrite:
        print(
            f"error: goldens {existing} exist in {args.out}; they change only deliberately: "
            "pass --overwrite and say why in the commit",
            file=sys.stderr,
        )
        return 2
    os.makedirs(args.out, exist_ok=True)
    for name in names:
        print(f"== {name}")
        regenerate(name, args.out)
    manifest = {
        "tensorflow": tf.__version__,
        "tfrnn": tfrnn.__version__,
        "models": {n: {"cells": MODELS[n][0], "options": MODELS[n][1], "mask": MODELS[n][2]} for n in sorted(MODELS)},
        "batch": BATCH,
        "timesteps": TIME,
        "features": FEATURES,
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
