"""What `tfrnn.export` and `tfrnn.tflite` share: signatures, function sets, checks.

Nothing here is public API. It sits above the core: it traces models that call `tfrnn.RNN`
inside a `tfrnn._core.trace_context` scope, which is the only way it reaches the RNNs.
"""
