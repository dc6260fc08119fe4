"""Documented experiments, end to end: each trains what it needs, measures, and writes its
tables, pictures and the hardware and time it took (`aegen experiment NAME`)."""

EXPERIMENTS = ("can-ae-generate", "lossy-compression")
