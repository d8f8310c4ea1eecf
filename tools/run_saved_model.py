"""Runs a signature of a SavedModel on arrays from a file, in a process that cannot import tfrnn.

    tfrnn-run-saved-model exports/my_model/1 --inputs inputs.npz --out outputs.npz
    tfrnn-run-saved-model exports/my_model/1 --signature step --inputs step_inputs.npz

This is TF Serving's situation: only TensorFlow, no tfrnn. The tool blocks `import tfrnn`
before it loads the model, so a SavedModel that secretly needs tfrnn fails here. `--inputs`
is an `.npz` whose names are the signature's inputs (or an `.npy` for a single-input
signature); the outputs go to `--out` as `.npz`. `--stream` feeds `inputs` `[batch, time,
...]` (and `mask`) to the `step` signature one timestep at a time, starting from
`initial_state`, and writes the stacked `outputs` and the final states. Errors print one line
and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib.abc
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads


class _BlockTfrnn(importlib.abc.MetaPathFinder):
    """Makes `import tfrnn` fail, as it would where tfrnn is not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "tfrnn" or name.startswith("tfrnn."):
            raise ImportError(f"{name} is blocked: this process runs without tfrnn")
        return None


sys.meta_path.insert(0, _BlockTfrnn())

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def _load_inputs(path: str) -> dict:
    if not os.path.exists(path):
        raise ValueError(f"--inputs {path} does not exist")
    data = np.load(path)
    if isinstance(data, np.ndarray):
        return {None: data}
    with data:
        return {name: data[name] for name in data.files}


def _signature(loaded, name: str):
    if name not in loaded.signatures:
        raise ValueError(f"unknown signature {name!r}; the SavedModel has {sorted(loaded.signatures)}")
    return loaded.signatures[name]


def _check_feed(function, name: str, feed: dict) -> dict:
    """`feed` against the signature's inputs: names, dtypes and shapes, in one line."""
    specs = function.structured_input_signature[1]
    if None in feed:
        if len(specs) != 1:
            raise ValueError(f"signature {name!r} takes {sorted(specs)}; give an .npz with those names")
        feed = {next(iter(specs)): feed[None]}
    if set(feed) != set(specs):
        raise ValueError(f"signature {name!r} takes inputs {sorted(specs)}, got {sorted(feed)}")
    checked = {}
    for key, spec in specs.items():
        value = feed[key]
        if not spec.shape.is_compatible_with(value.shape):
            raise ValueError(
                f"input {key!r} of signature {name!r} must have shape {spec.shape.as_list()} "
                f"(None: any), got {list(value.shape)}"
            )
        try:
            checked[key] = tf.constant(value, spec.dtype)
        except (TypeError, ValueError):
            raise ValueError(
                f"input {key!r} of signature {name!r} must be {spec.dtype.name}, got {value.dtype}"
            ) from None
    return checked


def stream(loaded, feed: dict) -> dict:
    """`inputs` `[batch, time, ...]` through `step` one timestep at a time."""
    step = _signature(loaded, "step")
    initial = _signature(loaded, "initial_state")
    if "inputs" not in feed:
        raise ValueError(f"--stream needs an array named 'inputs' [batch, time, ...], got {sorted(feed)}")
    inputs, mask = feed["inputs"], feed.get("mask")
    states = {k: v for k, v in initial(batch_size=tf.constant(inputs.shape[0], tf.int32)).items()}
    outputs = []
    for t in range(inputs.shape[1]):
        step_feed = {"inputs": inputs[:, t], **{k: v.numpy() for k, v in states.items()}}
        if mask is not None:
            step_feed["mask"] = mask[:, t]
        result = step(**_check_feed(step, "step", step_feed))
        outputs.append(result["outputs"].numpy())
        states = {k: v for k, v in result.items() if k.startswith("state_")}
    return {"outputs": np.stack(outputs, 1), **{k: v.numpy() for k, v in states.items()}}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saved_model", help="a SavedModel directory")
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--inputs", help=".npz (or .npy) of the signature's inputs")
    parser.add_argument("--stream", action="store_true", help="stream inputs through step")
    parser.add_argument("--out", help=".npz file for the outputs")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if not os.path.isdir(args.saved_model) or not tf.saved_model.contains_saved_model(args.saved_model):
            raise ValueError(f"{args.saved_model} is not a SavedModel directory")
        loaded = tf.saved_model.load(args.saved_model)
        feed = _load_inputs(args.inputs) if args.inputs else {}
        if args.stream:
            results = stream(loaded, feed)
        else:
            function = _signature(loaded, args.signature)
            results = {k: v.numpy() for k, v in function(**_check_feed(function, args.signature, feed)).items()}
    except (ValueError, TypeError, OSError, tf.errors.OpError) as error:
        message = error.message if isinstance(error, tf.errors.OpError) else str(error)
        print(f"error: {message.strip().splitlines()[0]}", file=sys.stderr)
        return 2
    for name, value in sorted(results.items()):
        print(f"{name}: shape {list(value.shape)} {value.dtype}")
    if args.out:
        np.savez(args.out, **results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
