"""Command-line tools with the names and flags operators know."""
