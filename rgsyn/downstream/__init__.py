"""Downstream recognition models (library): the training engine (engine.py, loop.py) with its tasks,
person re-ID (reid.py) and face verification (face.py), the in-memory image sets and batch sources
(datasets.py), and the identity encoder format (encoder.py). The `train` and `encoder` commands that
use them live in rgsyn/stages/."""
