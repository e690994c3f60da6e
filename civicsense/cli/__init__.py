"""The `civicsense` command line: one module per capability, shared options and exit codes."""
