"""The ``molvae`` command line: one entry point, one module per subcommand."""
