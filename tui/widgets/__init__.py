"""Reusable widgets of the llm-tui app."""
