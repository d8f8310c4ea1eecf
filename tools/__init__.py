"""tfrnn's command-line tools (installed as the `tfrnn_tools` package and `tfrnn-*` commands)."""
