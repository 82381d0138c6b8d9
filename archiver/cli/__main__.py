"""`python -m archiver.cli`: the same as the `suno-archiver` command."""

import sys

from archiver.cli.main import main

sys.exit(main())
