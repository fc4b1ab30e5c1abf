"""What xssr hands to people and tools outside it: the selection CSV (more exporters to come)."""

from xssr.exchange.selection_csv import SELECTION_COLUMNS, write_selection

__all__ = ["SELECTION_COLUMNS", "write_selection"]
