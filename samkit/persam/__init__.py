"""PerSAM and PerSAM-F: personalization from reference masks (prior, fine-tuning, the PerSAM
class, several objects, video)."""

from samkit.persam.multi import MultiPerSAM, PersonalizedObjects
from samkit.persam.persam import PerSAM, PersonalizedMask

__all__ = ["MultiPerSAM", "PerSAM", "PersonalizedMask", "PersonalizedObjects"]
