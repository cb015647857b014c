"""FTFT: Fine-Tuning by transFerring Training dynamics - reference workflow package."""

__version__ = "0.1.0"
