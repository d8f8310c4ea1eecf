"""Runs a built-in cell through tfrnn.RNN in every execution mode, for the per-cell tests."""

import tensorflow as tf

import tfrnn
from conftest import call_in

EXECUTIONS = ("jit-while", "jit-unroll", "while", "unroll")


def run_rnn(cell, inputs, initial_state, execution, caller):
    """`(outputs [batch, time, units], final states)` of `cell` over `inputs`."""
    rnn = tfrnn.RNN(
        cell,
        return_sequences=True,
        return_state=True,
        jit_compile=execution.startswith("jit"),
        unroll=execution.endswith("unroll"),
    )
    results = call_in(
        caller,
        lambda x, s: rnn(x, initial_state=s),
        tf.constant(inputs),
        [tf.constant(s) for s in initial_state],
    )
    return results[0].numpy(), [s.numpy() for s in results[1:]]
