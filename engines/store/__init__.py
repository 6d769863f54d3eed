"""The SQLite store: chat sessions, messages and replies, compare runs, the download queue's table, and its
transactional schema migrations."""
