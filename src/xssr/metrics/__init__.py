"""Evaluation metrics in plain numpy."""

from xssr.metrics.dice import confusion_counts, dice_from_counts, dice_per_image, summarise_dice

__all__ = ["confusion_counts", "dice_from_counts", "dice_per_image", "summarise_dice"]
