"""ONNX export of trained salt runs: the graph, its embedded metadata and the parity check."""

from salt.export.metadata import METADATA_KEY, read_metadata
from salt.export.onnx_export import ExportError, ExportResult, export_onnx
from salt.export.parity import ParityError

__all__ = [
    "METADATA_KEY",
    "ExportError",
    "ExportResult",
    "ParityError",
    "export_onnx",
    "read_metadata",
]
