"""``python -m fairvlm ...`` runs the command line (background jobs use this form)."""

import sys

from fairvlm.cli import main

sys.exit(main())
