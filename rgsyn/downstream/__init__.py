"""Downstream recognition models: person re-ID (reid.py), face verification (face.py), the identity
encoders used by the reward (encoder.py) and the `train` stage (stage.py)."""
