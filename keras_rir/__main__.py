"""`python -m keras_rir train ...`: the `keras-rir` command."""

from keras_rir.cli import main

main()
