"""Where every stage reads and writes. dvc.yaml uses the same paths; keep them in step."""
from __future__ import annotations

from pathlib import Path

# Benchmarks whose downstream model is trained (rfw_bias evaluates the casia_face models).
TRAINED_BENCHMARKS = ("market1501", "cuhk03", "casia_face")
BENCHMARKS = ("market1501", "cuhk03", "casia_face", "rfw_bias")
# Generator domains: one generator for persons (Market + CUHK03 identities), one for faces.
DOMAINS = ("persons", "faces")
DOMAIN_OF = {"market1501": "persons", "cuhk03": "persons", "casia_face": "faces", "rfw_bias": "faces"}
VERIFICATION_SETS = ("lfw", "agedb", "calfw", "cfp_fp", "cplfw")
RFW_GROUPS = ("African", "Asian", "Caucasian", "Indian")

MODELS = Path("models")
RESULTS = Path("results")


def prior_dir() -> Path:
    return MODELS / "prior"


def coldstart_dir(domain: str) -> Path:
    return MODELS / "coldstart" / domain


def encoder_path(domain: str, which: str = "reward") -> Path:
    """which: 'reward' (the encoder the reward uses) or 'gold' (held-out, never optimised)."""
    return MODELS / "encoder" / domain / f"{which}.pt"


def rl_dir(domain: str, rewards: str) -> Path:
    return MODELS / "rl" / domain / rewards


def rl_curve(domain: str, rewards: str) -> Path:
    return RESULTS / "rl" / f"{domain}-{rewards}.csv"


def synthetic_dir(benchmark: str, generator: str) -> Path:
    """generator: 'cold' or 'rl-<reward variant>'."""
    return Path("data") / "synthetic" / benchmark / generator


def synthetic_digest(benchmark: str, generator: str) -> Path:
    """Content digest of `synthetic_dir(benchmark, generator)`, written when it is published. The
    training stages depend on the folder of these small files (`RESULTS/synthetic/<benchmark>`),
    not on the image folders, so `dvc status` does not walk every synthetic image once per stage."""
    return RESULTS / "synthetic" / benchmark / f"{generator}.json"


def world_digest(out: str | Path, folder: str) -> Path:
    """Content digest of the data stage's output folder `out/folder` (see `synthetic_digest`)."""
    return Path(out) / "digest" / f"{folder}.json"


def generation_metrics(benchmark: str, generator: str) -> Path:
    return RESULTS / "generate" / f"{benchmark}-{generator}.json"


def downstream_dir(benchmark: str, variant: str, seed: int) -> Path:
    return MODELS / "downstream" / benchmark / variant / f"seed{seed}"


def run_metrics(benchmark: str, variant: str, seed: int) -> Path:
    """Per-run metrics written by `rgsyn train`, merged by `rgsyn collect`. One folder per row
    (`train_dir`): the DVC output of the row's stage, which trains all of its seeds."""
    return train_dir(benchmark, variant) / f"seed{seed}.json"


def train_dir(benchmark: str, variant: str) -> Path:
    return RESULTS / "train" / benchmark / variant


def train_curve(benchmark: str, variant: str, seed: int) -> Path:
    return RESULTS / "curves" / benchmark / variant / f"seed{seed}.csv"


def benchmark_dir(benchmark: str) -> Path:
    return Path("benchmarks") / benchmark


def benchmark_metrics(benchmark: str) -> Path:
    return benchmark_dir(benchmark) / "metrics.json"


def reports_dir() -> Path:
    return Path("reports")
