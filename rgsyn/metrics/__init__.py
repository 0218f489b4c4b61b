"""Metrics: ReID mAP/CMC, face verification, bias statistics, generation quality."""
from rgsyn.metrics.bias import *  # noqa: F401,F403
from rgsyn.metrics.generation import density_coverage, frechet_distance, memorisation  # noqa: F401
from rgsyn.metrics.reid import *  # noqa: F401,F403
from rgsyn.metrics.verification import *  # noqa: F401,F403
