"""Checkpoint files: written atomically, read without running code, carrying every process's random
generators, and the one list of settings a resume must share with its checkpoint."""
