"""``python -m samkit.train ...``: the same as ``samkit train ...``."""

import sys

from samkit.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
