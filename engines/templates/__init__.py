"""Chat templates: picking and rendering them (chat) inside time, size and cancel limits (limits)."""
