"""StateSnapshot: a model's states come back as they were, also when the block fails."""

import numpy as np
import pytest
import tensorflow as tf

import tfrnn
from tfrnn._deploy.state_snapshot import StateSnapshot
from conftest import random_array


def test_states_are_restored_after_the_block_and_after_an_error():
    rnn = tfrnn.RNN(tfrnn.LSTMCell(3, seed=1), stateful=True)
    rnn(random_array(0, 2, 4, 2))
    before = [v.numpy().copy() for v in rnn.states]
    with StateSnapshot.of_rnns([rnn]) as snapshot:
        rnn(random_array(1, 2, 4, 2))
        assert not np.array_equal(rnn.states[0].numpy(), before[0])
        snapshot.restore()
        np.testing.assert_array_equal(rnn.states[0].numpy(), before[0])
        rnn(random_array(2, 2, 4, 2))
    for variable, value in zip(rnn.states, before):
        np.testing.assert_array_equal(variable.numpy(), value)
    with pytest.raises(RuntimeError, match="boom"):
        with StateSnapshot.of_rnns([rnn]):
            rnn(random_array(3, 2, 4, 2))
            raise RuntimeError("boom")
    for variable, value in zip(rnn.states, before):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_stateless_rnns_have_nothing_to_keep():
    rnn = tfrnn.RNN(tfrnn.GRUCell(3, seed=2))
    rnn.build([None, None, 2])
    assert StateSnapshot.of_rnns([rnn]).variables == []
    variable = tf.Variable([1.0])
    with StateSnapshot([variable]):
        variable.assign([2.0])
    assert variable.numpy().tolist() == [1.0]
