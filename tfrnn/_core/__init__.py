"""tfrnn's internals below the public `RNN`: cell views, call plans, loop paths and state.

Nothing here is public API. Dependencies flow one way (a test enforces it): the utilities
(`activations`, `initializers`, `dropout`, `state_spec`, `distribute`, `time_axis`,
`arguments`, `variables`) and the cells' shared
base (`builtin_cell`, `cell_adapter`) come first, then the loops (`fast_loop`, `recompute`),
then what `tfrnn.RNN` runs a call with (`plan`, `paths`, `functions`, `trace_context`,
`stateful`). Nothing here imports the adapters, the export or TFLite code.
"""
