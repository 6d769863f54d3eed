"""`python -m tui` runs llm-tui."""

import sys

from engines.cli import main

sys.exit(main())
