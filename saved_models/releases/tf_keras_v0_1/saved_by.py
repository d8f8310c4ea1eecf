"""Saves models of tfrnn 0.1.0's tf-keras layers (tfrnn.keras at commit e805796); kept as it ran, never rerun."""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np
import tensorflow as tf
import tf_keras
import tfrnn

out = sys.argv[1]
tf.random.set_seed(0)
x = tf_keras.Input((None,), dtype="int32", batch_size=2, name="tokens")
h = tf_keras.layers.Embedding(10, 4, mask_zero=True, name="embedding")(x)
h = tf_keras.layers.Bidirectional(tfrnn.keras.LSTM(3, return_sequences=True, seed=1), name="bidirectional")(h)
h = tfrnn.keras.RNN([tfrnn.SimpleRNNCell(4, seed=2), tfrnn.GRUCell(3, seed=3)], return_sequences=True, name="stacked")(h)
h = tfrnn.keras.SimpleRNN(3, return_sequences=True, seed=4, name="simple_rnn")(h)
h = tfrnn.keras.GRU(5, stateful=True, reset_after=False, seed=5, name="gru")(h)
model = tf_keras.Model(x, tf_keras.layers.Dense(2, kernel_initializer=tf_keras.initializers.RandomNormal(stddev=3.0, seed=0), name="dense")(h))
rng = np.random.default_rng(0)
def ids(seed):
    r = np.random.default_rng(seed)
    t = r.integers(1, 10, [2, 6]).astype(np.int32)
    t[0, 4:] = 0
    return t
first, second = ids(1), ids(2)
model.predict_on_batch(first)  # non-zero stored states
model.save(os.path.join(out, "model.keras"))
model.save(os.path.join(out, "savedmodel"), save_format="tf")
expected = model.predict_on_batch(second)
np.savez(os.path.join(out, "io.npz"), inputs=second, expected=expected)
print(expected)
