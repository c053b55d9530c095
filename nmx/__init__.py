"""The ``nmx`` command line."""
