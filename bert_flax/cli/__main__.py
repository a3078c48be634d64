"""`python -m bert_flax.cli`: the `bert-flax` command."""

import sys

from bert_flax.cli import main

sys.exit(main())
