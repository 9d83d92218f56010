"""The ``rtsim`` command line, one module per family of commands (``rtsim.cli`` is the entry)."""
