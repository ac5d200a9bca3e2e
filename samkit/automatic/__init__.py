"""Segment everything: the automatic mask generator and its mask-batch operations."""

from samkit.automatic.generator import MaskGenerator

__all__ = ["MaskGenerator"]
