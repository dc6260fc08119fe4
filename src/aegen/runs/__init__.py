"""The run folder: its files, its config, its weights and checkpoint, and its lock."""
