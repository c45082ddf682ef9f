"""``python -m cli``: the ``eofusion`` command."""

from cli.main import main

main()
