"""llm-tui's Textual user interface."""
