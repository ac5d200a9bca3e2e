"""Evaluation: mask metrics and the interactive click protocol."""
