"""Labeling logic shared by the stages: tile merge, vote, SDR composition, id re-linking."""
