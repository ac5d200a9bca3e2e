"""The data engine: annotate whole image collections, resumable and fault-tolerant, with worker
processes on this machine or Ray actors on a cluster. See docs/engine.md."""

from samkit.engine.collect import ImageItem, collect
from samkit.engine.modes import MODES, ModeSpec
from samkit.engine.run import ENGINES, Summary, annotate

__all__ = ["ENGINES", "MODES", "ImageItem", "ModeSpec", "Summary", "annotate", "collect"]
