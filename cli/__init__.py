"""The `llm-tui` command: its entry point (main.py) and one module per subcommand; the only code that starts
the TUI or reads argv. Nothing in engines/ imports it."""
