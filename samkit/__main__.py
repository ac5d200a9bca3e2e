import sys

from samkit.cli import main

sys.exit(main())
