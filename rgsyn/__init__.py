"""rgsyn: a reproducibility suite for RL-guided synthetic data for identity recognition."""

__version__ = "0.1.0"
