"""The built-in CellMap-like synthetic sample and its pipeline steps."""
