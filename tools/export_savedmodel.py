"""Exports a model built on tfrnn as a SavedModel for TF Serving, checked on export.

    tfrnn-export --model model.keras --out exports/my_model/1
    tfrnn-export --factory my_package.models:build --checkpoint ckpt/model-10 --out exports/m/1

`--model` loads a Keras model file made of tfrnn layers: a Keras 3 `.keras` file
(`tfrnn.keras` layers), or a tf-keras `.keras` or `.h5` file or SavedModel directory
(`tfrnn.tf_keras` layers); the file's `metadata.json` says which Keras saved it. `--factory module:function` calls a Python function that
returns a built model (a `tfrnn.RNN`, a `tf.Module` around RNNs, a Keras model), whose
weights `--checkpoint` restores (a `tf.train.Checkpoint(model=...)` prefix). The export has
`serving_default`, `step` and `initial_state` signatures (and `reset_state` for a stateful
model); it is loaded back and checked before it is moved into place, and the max abs errors
are printed. Errors print one line and exit with status 2; nothing is written then.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import zipfile

try:
    from tfrnn_tools import quiet
except ImportError:  # run as a script from a source tree
    import quiet

with quiet.stderr_kept_back(quiet.verbose_requested()):
    import numpy as np
    import tensorflow as tf

    import tfrnn


def saved_by_keras_3(path: str) -> bool:
    """Whether the model file at `path` was saved by Keras 3 (else tf-keras)."""
    if os.path.isdir(path) or not zipfile.is_zipfile(path):
        return False  # a tf-keras SavedModel directory or HDF5 file
    with zipfile.ZipFile(path) as archive:
        if "metadata.json" not in archive.namelist():
            return False
        version = json.loads(archive.read("metadata.json")).get("keras_version", "")
    return int(version.split(".")[0] or 0) >= 3


def load_model(args: argparse.Namespace):
    """The model `--model` or `--factory` names (weights from `--checkpoint`)."""
    if args.model:
        if not os.path.exists(args.model):
            raise ValueError(f"--model {args.model} does not exist")
        if saved_by_keras_3(args.model):
            import keras

            return keras.models.load_model(args.model, compile=False)
        import tf_keras

        return tf_keras.models.load_model(args.model, compile=False)
    module_name, _, function_name = args.factory.partition(":")
    if not module_name or not function_name:
        raise ValueError(f"--factory must be module:function, got {args.factory!r}")
    sys.path.insert(0, os.getcwd())
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"--factory {args.factory}: {error}") from None
    model = factory()
    if args.checkpoint:
        status = tf.train.Checkpoint(model=model).read(args.checkpoint)
        status.assert_existing_objects_matched()
    return model


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a Keras 3 or tf-keras model file (or tf-keras SavedModel directory)")
    source.add_argument("--factory", help="module:function returning a built model")
    parser.add_argument("--checkpoint", help="tf.train.Checkpoint(model=...) prefix to restore")
    parser.add_argument("--out", required=True, help="the export directory (e.g. models/name/1)")
    parser.add_argument("--features", type=int, nargs="+", help="feature shape, if not inferable")
    parser.add_argument("--dtype", default="float32", help="input dtype (int32 for token ids)")
    parser.add_argument("--mask", action="store_true", help="signatures take a mask input")
    parser.add_argument("--no-step", action="store_true", help="no step/initial_state signatures")
    parser.add_argument(
        "--jit-compile",
        action="store_true",
        help="XLA-compiled signatures (TF Serving needs --xla_cpu_compilation_enabled)",
    )
    parser.add_argument("--warmup", action="store_true", help="write TF Serving warm-up requests")
    parser.add_argument("--sample-inputs", help=".npy inputs [batch, time, ...] to check on")
    parser.add_argument("--tflite-batch-size", type=int, default=1)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
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
        if os.path.exists(args.out) and not args.overwrite:
            raise ValueError(f"--out {args.out} already exists; pass --overwrite to replace it")
        model = load_model(args)
        input_spec = None
        if args.features:
            input_spec = tf.TensorSpec([None, None, *args.features], tf.as_dtype(args.dtype))
        sample_inputs = np.load(args.sample_inputs) if args.sample_inputs else None
        result = tfrnn.export.export_saved_model(
            model,
            args.out,
            input_spec=input_spec,
            mask=args.mask,
            step=False if args.no_step else None,
            jit_compile=args.jit_compile,
            sample_inputs=sample_inputs,
            warmup=args.warmup,
            overwrite=args.overwrite,
            tflite_batch_size=args.tflite_batch_size,
            model_name=os.path.basename(os.path.dirname(os.path.abspath(args.out))) or "model",
            log=print,
        )
    except (ValueError, TypeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"signatures: {', '.join(result.signatures)}")
    for name, error in result.max_abs_error.items():
        print(f"max abs error ({name}): {error:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
