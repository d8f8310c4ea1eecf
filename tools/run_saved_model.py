"""Runs a signature of a SavedModel on arrays from a file, in a process that cannot import tfrnn.

    tfrnn-run-saved-model exports/my_model/1 --inputs inputs.npz --out outputs.npz
    tfrnn-run-saved-model exports/my_model/1 --signature step --inputs step_inputs.npz

This is TF Serving's situation: only TensorFlow, no tfrnn. The tool blocks `import tfrnn`
before it loads the model, so a SavedModel that secretly needs tfrnn fails here. `--inputs`
is an `.npz` whose names are the signature's inputs (or an `.npy` for a single-input
signature); the outputs go to `--out` as `.npz`. `--stream` feeds whole sequences to the `step`
signature one timestep at a time, starting from `initial_state` (the inputs with a time
axis and `mask` step by step, side inputs whole; an input has a time axis when `step` takes
it with one axis fewer than `serving_default`), and writes the outputs stacked over time and
the final states. Errors print one line
and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib.abc
import os
import sys

try:
    from tfrnn_tools import quiet
except ImportError:  # run as a script from a source tree
    import quiet


class _BlockTfrnn(importlib.abc.MetaPathFinder):
    """Makes `import tfrnn` fail, as it would where tfrnn is not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "tfrnn" or name.startswith("tfrnn."):
            raise ImportError(f"{name} is blocked: this process runs without tfrnn")
        return None


sys.meta_path.insert(0, _BlockTfrnn())

with quiet.stderr_kept_back(quiet.verbose_requested()):
    import numpy as np
    import tensorflow as tf


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


def time_axis_inputs(loaded) -> list:
    """The inputs `step` takes one timestep at a time: one axis fewer than in `serving_default`."""
    whole = _signature(loaded, "serving_default").structured_input_signature[1]
    step = _signature(loaded, "step").structured_input_signature[1]
    return [k for k, spec in step.items() if k in whole and spec.shape.rank < whole[k].shape.rank]


def stream(loaded, feed: dict) -> dict:
    """The whole-sequence `feed` through `step` one timestep at a time.

    Inputs with a time axis (and `mask`) go in one timestep at a time, side inputs whole.
    """
    step = _signature(loaded, "step")
    initial = _signature(loaded, "initial_state")
    timed = time_axis_inputs(loaded)
    specs = step.structured_input_signature[1]
    if None in feed and len(timed) == 1:
        feed = {timed[0]: feed[None]}
    expected = sorted(k for k in specs if not k.startswith("state_"))
    if sorted(feed) != expected:
        raise ValueError(f"--stream needs the arrays {expected} (whole sequences), got {sorted(feed)}")
    for name in expected:
        if name not in timed and feed[name].ndim > specs[name].shape.rank:
            raise ValueError(
                f"input {name!r} is a side input: step takes it whole, {specs[name].shape.as_list()}, but it has "
                f"shape {list(feed[name].shape)}; only {timed} have a time axis"
            )
    batch, time = feed[timed[0]].shape[:2]
    states = dict(initial(batch_size=tf.constant(batch, tf.int32)))
    collected = {}
    for t in range(time):
        step_feed = {k: v[:, t] if k in timed else v for k, v in feed.items()}
        step_feed.update({k: v.numpy() for k, v in states.items()})
        result = step(**_check_feed(step, "step", step_feed))
        states = {k: v for k, v in result.items() if k.startswith("state_")}
        for k, v in result.items():
            if not k.startswith("state_"):
                collected.setdefault(k, []).append(v.numpy())
    return {**{k: np.stack(v, 1) for k, v in collected.items()}, **{k: v.numpy() for k, v in states.items()}}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saved_model", help="a SavedModel directory")
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--inputs", help=".npz (or .npy) of the signature's inputs")
    parser.add_argument("--stream", action="store_true", help="stream inputs through step")
    parser.add_argument("--out", help=".npz file for the outputs")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's and LiteRT's C++ log lines")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    with quiet.stderr_kept_back(args.verbose) as kept:
        status = run(args)
        kept.failed = status != 0
    return status


def run(args: argparse.Namespace) -> int:
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
