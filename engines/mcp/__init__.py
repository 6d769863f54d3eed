"""MCP (Model Context Protocol) servers' tools for the chat: configured in `[[mcp_servers]]`, started on demand."""
