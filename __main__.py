"""``python -m coframe``: the same command line as the ``coframe`` script."""

from coframe.cli import app

app(prog_name="coframe")
