"""llm-tui's core: engines, catalog, config and storage, with no UI imports."""

__version__ = "0.1.0"
