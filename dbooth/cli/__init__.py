"""The ``dbooth`` command: parses, calls ``dbooth.api`` and prints. ``app`` holds the verbs, ``views`` the tables."""

from dbooth.cli.app import main

__all__ = ["main"]
