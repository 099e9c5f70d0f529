"""dpcore.store: see ARCHITECTURE.md (layer table)."""
