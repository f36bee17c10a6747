"""Lightning callbacks; the ones users add by class_path are exported here."""

from salt.callbacks.memory import MemoryLogger
from salt.callbacks.performance_writer import PerformanceWriter

__all__ = ["MemoryLogger", "PerformanceWriter"]
