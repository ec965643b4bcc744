"""Aggregates of OPC 10000-13 (processed history), sans-IO. (docstring completed below)"""

from ._engine import AggregateInvalidInputs, AggregateNotSupported, ProcessedValue, process
from ._window import AggregateConfiguration

__all__ = ["AggregateConfiguration", "AggregateInvalidInputs", "AggregateNotSupported",
           "ProcessedValue", "process"]
