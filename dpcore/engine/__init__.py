"""dpcore.engine: see ARCHITECTURE.md (layer table)."""
