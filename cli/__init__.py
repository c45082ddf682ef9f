"""The ``eofusion`` command line: the top layer, a thin front over the catalogue, the service functions of
``plugins``, the server and the demo data (``cli.main``; ``python -m cli`` runs it too)."""
