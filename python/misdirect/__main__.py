"""`python -m misdirect ARGS`: the misdirect command."""

from ._binary import main

main()
