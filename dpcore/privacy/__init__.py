"""dpcore.privacy: see ARCHITECTURE.md (layer table)."""
