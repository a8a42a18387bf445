"""The leaf layer: errors, length units and atomic file writes. Imports nothing of coframe."""
