"""``python -m misstep``: the same as the ``misstep`` command."""

from misstep.cli import main

main()
