"""salt: multi-modal, multi-task networks for structured high-energy-physics data."""

__version__ = "0.1.0"
