"""dpcore.jobs.queue: see ARCHITECTURE.md (layer table)."""
