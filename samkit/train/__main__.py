"""``python -m samkit.train ...``: the same as ``samkit train ...``."""

import argparse
import sys

from samkit.errors import SamkitError
from samkit.train.run import add_arguments, run

parser = argparse.ArgumentParser(prog="python -m samkit.train", description="Train SAM.")
add_arguments(parser)
try:
    sys.exit(run(parser.parse_args()))
except SamkitError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
