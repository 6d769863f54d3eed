"""config.toml: loading with clear errors (load), comment-keeping edits (edit), the [serve] table, the endpoint
and alias tables, value parsing, and the settings screen's field list."""
