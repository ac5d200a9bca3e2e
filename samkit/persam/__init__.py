"""PerSAM and PerSAM-F: one-shot personalization (prior, fine-tuning, the PerSAM class, video)."""

from samkit.persam.persam import PerSAM, PersonalizedMask

__all__ = ["PerSAM", "PersonalizedMask"]
