"""``python -m callwhisper.cli``: the same as the ``callwhisper`` command."""

from callwhisper.cli import main

main(prog_name="callwhisper")
