"""Structured output: schemas checked against limits before a grammar is built (limits), replies checked
against their schema (check)."""
