"""`python -m tui` runs llm-tui."""

import sys

from cli.main import main

sys.exit(main())
