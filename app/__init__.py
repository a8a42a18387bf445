"""The application layer: the workspace and the commands that read and write it."""
