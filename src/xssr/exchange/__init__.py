"""What xssr hands to people and tools outside it, and takes back from them: the selection CSV,
Label Studio tasks and exports (label_studio), nnU-Net v2 raw datasets (nnunet), and finished
masks checked into a round folder (masks_in, rounds)."""

from xssr.exchange.selection_csv import SELECTION_COLUMNS, write_selection

__all__ = ["SELECTION_COLUMNS", "write_selection"]
