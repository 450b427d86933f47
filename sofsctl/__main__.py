"""``python -m sofsctl``: the same command line as the ``sofsctl`` console script."""

from .main import main

main()
