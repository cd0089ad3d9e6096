"""`python -m keras_rir train ...`: the `keras-rir` command, run as its console script runs it."""

import sys

from keras_rir.cli import main

sys.exit(main())
