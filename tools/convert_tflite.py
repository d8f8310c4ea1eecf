"""Converts a tfrnn SavedModel to TFLite and checks it in LiteRT against TensorFlow.

    tfrnn-convert-tflite exports/my_model/1 my_model.tflite
    tfrnn-convert-tflite exports/my_model/1 my_model_int8.tflite --quantize dynamic_int8

The SavedModel must come from `tfrnn-export` / `tfrnn.export.export_saved_model`, which
keeps TFLite-ready functions beside the serving signatures. The `.tflite` file gets the
`serving_default` and `step` signatures (and `reset_state` for a stateful model). Prints
the op list, how many LSTMs became the fused `UNIDIRECTIONAL_SEQUENCE_LSTM` op, the largest
cell state on the sample inputs, and LiteRT's max abs error against TensorFlow per
signature. Errors print one line and exit with status 2; nothing is written then.
"""

from __future__ import annotations

import argparse
import os
import sys

try:
    from tfrnn_tools import quiet
except ImportError:  # run as a script from a source tree
    import quiet

with quiet.stderr_kept_back(quiet.verbose_requested()):
    import tfrnn

FUSE = {"auto": "auto", "yes": True, "no": False}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saved_model", help="a SavedModel directory exported by tfrnn")
    parser.add_argument("output", help="the .tflite file to write")
    parser.add_argument(
        "--signatures",
        help="comma-separated, from serving_default,step (default: both, where available)",
    )
    parser.add_argument("--quantize", choices=["none", "float16", "dynamic_int8"], default="none")
    parser.add_argument(
        "--fuse-lstm",
        choices=sorted(FUSE),
        default="auto",
        help="auto: fused LSTM op unless its cell-state clip changes results on the samples",
    )
    parser.add_argument("--no-check", action="store_true", help="skip the LiteRT vs. TF check")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's and LiteRT's C++ log lines")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    with quiet.stderr_kept_back(args.verbose) as kept:
        status = run(args)
        kept.failed = status != 0
    return status


def run(args: argparse.Namespace) -> int:
    signatures = args.signatures.split(",") if args.signatures else None
    try:
        if not os.path.isdir(args.saved_model):
            raise ValueError(f"{args.saved_model} is not a directory")
        result = tfrnn.tflite.convert(
            args.saved_model,
            args.output,
            signatures=signatures,
            quantize=None if args.quantize == "none" else args.quantize,
            fuse_lstm=FUSE[args.fuse_lstm],
            check=not args.no_check,
            overwrite=args.overwrite,
            log=print,
        )
    except (ValueError, TypeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"signatures: {', '.join(result.signatures)}")
    print(f"fused LSTM ops: {result.fused_lstms}")
    if result.max_abs_cell_state:
        print(f"largest |c| on the samples: {max(result.max_abs_cell_state):.3g} (the fused op clips at 10)")
    for note in result.notes:
        print(f"note: {note}")
    for name, error in result.max_abs_error.items():
        print(f"max abs error ({name}, LiteRT vs. TensorFlow): {error:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
