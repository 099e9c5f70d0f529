"""dpcore.views: see ARCHITECTURE.md (layer table)."""
