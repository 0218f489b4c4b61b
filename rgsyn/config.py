"""Typed, validated params.

`params.yaml` (the toy profile) is loaded into the dataclasses below. The dataclass defaults ARE
the embedded toy profile; `configs/smoke.yaml` and `configs/paper.yaml` are overlays on them.
Unknown keys, wrong types and out-of-range values fail at load time with a `ConfigError` that
names the key, the value and what is allowed.

Each field may carry metadata: `rng(lo, hi)` for numeric bounds (inclusive, None = open) and
`one_of(...)` for an enumeration.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rgsyn.errors import ConfigError


def rng(lo=None, hi=None, default=dataclasses.MISSING, **kw):
    return field(default=default, metadata={"range": (lo, hi)}, **kw)


def one_of(*choices, default=dataclasses.MISSING):
    return field(default=default, metadata={"choices": tuple(choices)})


def _list(*items):
    return field(default_factory=lambda: list(items))


# --------------------------------------------------------------------------------------- data
@dataclass
class PersonWorld:
    n_train_ids: int = rng(2, None, 48)      # training identities
    n_test_ids: int = rng(2, None, 48)       # query/gallery identities (disjoint from train)
    n_cams: int = rng(2, 9, 6)               # cameras (Market: 6, CUHK03: 2)
    imgs_per_id_cam: int = rng(1, None, 2)   # images per identity per camera it appears in
    cams_per_id: int = rng(2, 9, 4)          # cameras each identity appears in
    # real images of each TRAINING identity, spread round-robin over its cameras (0 = cams_per_id x
    # imgs_per_id_cam, like the test identities); the real-data-size knob of the oracle sweep
    # (benchmarks/sweep_real_size.py). The test split is drawn from its own random stream, so this
    # never changes the query and gallery images.
    train_imgs_per_id: int = rng(0, None, 0)
    n_distractors: int = rng(0, None, 40)    # gallery '0000' distractors (Market only)
    n_junk: int = rng(0, None, 20)           # gallery '-1' junk (Market only)
    # toy: 32x16, the re-ID models' input size (reid.height/width); at 64x32 a toy run cost 2.4x as much
    height: int = rng(16, None, 32)
    width: int = rng(8, None, 16)


@dataclass
class Cuhk03World(PersonWorld):
    """A PersonWorld whose own defaults are the CUHK03-NP-style ones (2 cameras, no distractors or
    junk), so that an overlay that sets only some keys (configs/smoke.yaml) keeps the rest."""

    n_train_ids: int = rng(2, None, 32)
    n_test_ids: int = rng(2, None, 32)
    n_cams: int = rng(2, 9, 2)
    imgs_per_id_cam: int = rng(1, None, 4)
    cams_per_id: int = rng(2, 9, 2)
    n_distractors: int = rng(0, None, 0)
    n_junk: int = rng(0, None, 0)


@dataclass
class FaceWorld:
    n_train_ids: int = rng(4, None, 64)                   # CASIA-style identities
    imgs_per_id: int = rng(2, None, 12)
    # shares of African, Asian, Caucasian, Indian identities (rgsyn.paths.RFW_GROUPS): imbalanced
    # like CASIA-WebFace, which is mostly Caucasian, so that bias is measurable on the RFW-style set
    group_shares: list[float] = _list(0.1, 0.2, 0.6, 0.1)
    n_pairs: int = rng(20, None, 600)                     # pairs per verification set (10 folds)
    # pairs per RFW group. 1200, not 400: the paired sd of the oracle's RFW gain over 6 seeds fell from
    # 1.45 to 0.82 points with the same models evaluated on 1200 pairs (README, "The instrument")
    n_rfw_pairs: int = rng(20, None, 1200)
    size: int = rng(16, None, 32)


@dataclass
class PriorWorld:
    n_classes: int = rng(2, 1000, 10)          # shape classes
    imgs_per_class: int = rng(1, None, 150)
    # images in each of the three "people" classes (outdoor person, indoor person, face; every image
    # a fresh random identity, none of them a benchmark identity), as ImageNet holds people; 0 = none
    people_per_class: int = rng(0, None, 300)
    size: int = rng(8, None, 32)


@dataclass
class DatasetPaths:
    """Where each benchmark's data lives. In toy/smoke they point into the generated world."""

    market1501: str = "data/world/market1501"
    cuhk03: str = "data/world/cuhk03"
    cuhk03_mode: str = one_of("labeled", "detected", default="labeled")
    casia_face: str = "data/world/casia"
    verification: str = "data/world/verification"   # holds lfw/ agedb/ calfw/ cfp_fp/ cplfw/
    rfw_bias: str = "data/world/rfw"
    prior: str = "data/world/prior"


@dataclass
class DataParams:
    world: bool = True           # toy/smoke: build the toy world; paper: only check the real data
    out: str = "data/world"
    seed: int = rng(0, None, 0)
    workers: int = rng(1, 64, 2)  # processes that render the toy world (the bytes do not depend on it)
    market: PersonWorld = field(default_factory=PersonWorld)
    cuhk03: Cuhk03World = field(default_factory=Cuhk03World)
    faces: FaceWorld = field(default_factory=FaceWorld)
    prior: PriorWorld = field(default_factory=PriorWorld)
    paths: DatasetPaths = field(default_factory=DatasetPaths)


# ------------------------------------------------------------------------------ generator
@dataclass
class DiTArch:
    """A diffusers DiTTransformer2DModel config (toy: small, pixel space).

    The toy generator draws 16x16 pixels in 2x2 patches: 64 tokens, the same cost as 32 px in 4x4
    patches, but each token predicts 12 values instead of 48. The gold encoder still tells the
    toy world's identities apart at 16 px (oracle renders taken down to 16x16 and back: 86.5%
    Market, 86.7% CUHK03, 78.1% faces, against 90.6%, 93.8%, 79.7% at full size), and the cold
    start's gold identity accuracy went from 53.1/51.6/55.1% at 32 px in 4x4 patches to
    72.4/82.0/72.7% (README, "Toy generator"). The images are resized to the downstream size."""

    sample_size: int = rng(4, None, 16)
    patch_size: int = rng(1, 16, 2)
    in_channels: int = rng(1, None, 3)
    num_layers: int = rng(1, None, 4)
    num_attention_heads: int = rng(1, None, 4)
    attention_head_dim: int = rng(4, None, 16)
    num_classes: int = rng(0, None, 0)     # 0 = one per class folder of the prior domain


@dataclass
class PriorParams:
    pretrained: str = ""          # paper: local diffusers folder or hub id of DiT-XL/2-256; toy: ""
    vae: str = ""                 # paper: SD VAE folder/hub id; toy: "" = pixel space (identity AE)
    arch: DiTArch = field(default_factory=DiTArch)
    num_train_timesteps: int = rng(10, None, 1000)
    prediction_type: str = one_of("v_prediction", "epsilon", "sample", default="v_prediction")  # toy prior
    # toy: ~115 s on 2 idle CPU cores; 500 steps gave blobs in patch noise, 1500 clean class shapes
    # and recognisable (blurry) people. paper: 0 (loaded)
    steps: int = rng(0, None, 1500)
    batch_size: int = rng(1, None, 64)
    lr: float = rng(0.0, 1.0, 2e-3)
    checkpoint_every: int = rng(1, None, 100)


@dataclass
class SamplerParams:
    num_inference_steps: int = rng(1, 1000, 10)
    eta: float = rng(0.0, 1.0, 1.0)              # DDIM eta > 0 makes every step a Gaussian policy
    # classifier-free guidance. toy: 4.0 (as the paper); measured on the toy cold start (gold identity
    # accuracy, Market / faces): 2.0 gave 32% / 28%, 4.0 52% / 36%, 6.0 47% / 38%, 8.0 43% on Market
    guidance_scale: float = rng(1.0, None, 4.0)


@dataclass
class LoraParams:
    rank: int = rng(1, None, 8)
    alpha: float = rng(0.0, None, 8.0)
    target_modules: list[str] = _list("to_q", "to_k", "to_v", "to_out.0")


@dataclass
class ColdstartParams:
    lr: float = rng(0.0, 1.0, 3e-3)      # paper: 1e-5
    # toy: at 300 steps the samples were colour blobs, at 1000 figures in the identity's clothing
    # colours; faces' gold identity accuracy (CFG 4): 36% at 1000 steps, 36% at 1000 with lr 6e-3,
    # 54% at 2000 (about 3 min a domain on 2 cores)
    steps: int = rng(0, None, 2000)
    batch_size: int = rng(1, None, 32)
    # toy: the tiny prior has seen people only as a few generic classes, so the head alone cannot
    # draw a given identity; a LoRA on attention, feed-forward and adaLN modulation layers trains
    # with it and is merged at the end. paper: false (frozen backbone).
    train_lora: bool = True
    lora: LoraParams = field(default_factory=lambda: LoraParams(rank=16, alpha=16.0, target_modules=[
        "to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "norm1.linear", "proj_out_2"]))
    checkpoint_every: int = rng(1, None, 200)
    # side in px each domain's generator is adapted and sampled at; 0 = the prior's (toy: 32).
    # paper: persons 256 (DiT-XL/2's own size), faces 128 (PAPER.md), i.e. 16x16 SD-VAE latents
    image_size: dict[str, int] = field(default_factory=lambda: {"persons": 0, "faces": 0})


@dataclass
class GenerateParams:
    per_identity: int = rng(1, None, 4)
    batch_size: int = rng(1, None, 64)
    seed: int = rng(0, None, 0)                   # image n of identity row r uses seed (seed, r, n)
    memorisation_threshold: float = rng(-1.0, 1.0, 0.95)  # nearest-real cosine above = likely copy
    grid_identities: int = rng(1, None, 8)        # rows of the sample grid (synthetic | real)
    # benchmarks the `oracle` generator (the toy world re-rendering the training identities with
    # fresh nuisances: a perfect generator) runs for, benchmark -> domain; dvc.yaml iterates over
    # it. Toy and smoke only: the paper profile sets {} (there is no world to render).
    oracle: dict[str, str] = field(default_factory=lambda: {
        "market1501": "persons", "cuhk03": "persons", "casia_face": "faces"})


# ------------------------------------------------------------------------------------ rl
@dataclass
class RewardWeights:
    sem: float = rng(0.0, None, 1.0)
    cov: float = rng(0.0, None, 0.75)
    exp: float = rng(0.0, None, 0.25)


@dataclass
class RLParams:
    lr: float = rng(0.0, 1.0, 3e-3)          # toy: LoRA on a tiny DiT, few updates; paper: 1e-5
    steps: int = rng(0, None, 16)             # policy updates (toy: ~0.35 s each on 2 idle cores)
    ids_per_step: int = rng(1, None, 4)       # identities per rollout batch
    samples_per_id: int = rng(2, None, 4)     # trajectories per identity (group for set rewards)
    inner_epochs: int = rng(1, None, 1)
    clip_range: float = rng(0.0, None, 1e-1)
    kl_coef: float = rng(0.0, None, 0.01)
    max_grad_norm: float = rng(0.0, None, 1.0)
    alpha: float = rng(0.0, None, 0.5)        # R_cov repulsion weight
    eps: float = rng(0.0, None, 0.1)          # R_exp: target spread (1 + eps) * S_r
    tau: float = rng(1e-9, None, 1.0)         # R_exp temperature
    rbf_bandwidth: float = rng(0.0, None, 0.0)  # 0 = median heuristic
    # toy: the feed-forward layers too; attention-only LoRA barely moved the tiny DiT's log-probs
    lora: LoraParams = field(default_factory=lambda: LoraParams(target_modules=[
        "to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"]))
    encoder: str = one_of("identity_model", "open_clip", default="identity_model")
    open_clip_model: str = "ViT-B-32"
    open_clip_checkpoint: str = ""
    hacking_guard: str = one_of("off", "warn", "stop", default="warn")
    hacking_window: int = rng(2, None, 4)
    hacking_tolerance: float = rng(0.0, 1.0, 0.05)  # gold drop (accuracy) that counts as falling
    train_timesteps: int = rng(0, None, 2)    # denoising steps per trajectory in each update (random subset; 0 = all)
    # denoising steps with sigma_t < min_sigma_ratio x (mean sigma of the schedule) are left out of
    # the update: the log-prob gradient grows as 1/sigma_t and the KL as 1/sigma_t^2 (toy, 10 steps:
    # the last two, sigma 0.0093 and 0.0047 against a mean of 0.38); 0 = train on every step
    min_sigma_ratio: float = rng(0.0, 1.0, 0.1)
    # optimizer steps per rollout (random chunks of trajectories). toy: 2, so that from the second chunk
    # on the ratios differ from 1 and the clipped objective acts (with 1 the ratio is always 1)
    minibatches: int = rng(1, None, 2)
    ref_images_per_id: int = rng(0, None, 0)  # real images per identity for prototypes/F_ref (0 = all)
    checkpoint_every: int = rng(1, None, 4)
    reward_variants: dict[str, RewardWeights] = field(default_factory=lambda: {
        "full": RewardWeights(),
        "no_sem": RewardWeights(sem=0.0),
        "no_cov": RewardWeights(cov=0.0),
        "no_exp": RewardWeights(exp=0.0),
    })


@dataclass
class EncoderParams:
    """Identity encoders for the reward (seed 0) and the held-out gold score (gold_seed)."""

    seed: int = rng(0, None, 0)
    gold_seed: int = rng(0, None, 1)
    # training epochs of each encoder; 0 = reid.epochs / face.epochs. Toy: 8, twice the toy re-ID run:
    # the gold person encoder then scores the oracle's renders 91% (Market) and 94% (CUHK03) against
    # 72% and 85% at 4 epochs, so it can tell a generator's identities apart (cost: ~15 s)
    epochs: int = rng(0, None, 8)


# ---------------------------------------------------------------------------- downstream
@dataclass
class ReidParams:
    # toy default small_resnet (rgsyn.downstream.small_resnet): at 64x32 on CPU a step is 2.9x cheaper
    # than resnet18's (whose last stage runs on 2x1 maps, where oneDNN's conv backward is slow); real-only
    # mAP over 3 seeds at lr 3e-3: Market 37.7 vs 41.3, CUHK03 35.8 vs 35.0 for resnet18 at 1e-3, within
    # the seed spread (benchmarks/bench_reid_backbone.py --train)
    backbone: str = one_of("resnet50", "osnet_x1_0", "osnet_x0_25", "resnet18", "vit_b16",
                           "small_resnet", default="small_resnet")
    # local ImageNet weights for the backbone, loaded strictly (rgsyn.downstream.pretrained): resnet50/18
    # in torchvision's format, vit_b16 in timm's (pos_embed resampled to the input), osnet torchreid's; "" = random
    pretrained: str = ""
    # toy: 32x16, the toy world's size; a run costs 2.4x less than at 64x32 and the oracle gain is
    # still clear (README, "The instrument"). paper: 256x128
    height: int = rng(16, None, 32)
    width: int = rng(8, None, 16)
    epochs: int = rng(1, None, 4)
    # optimizer steps of a run; 0 = epochs x batches per epoch. Counted in steps, a run's length does
    # not depend on the size of the real split (rgsyn.real_size sweeps it at a fixed step count).
    # Toy: 96 (16 epochs of the toy Market), where the oracle gain is clear on every seed (README,
    # "The instrument"); at the earlier 4 epochs (24 steps) real mAP was half its plateau
    steps: int = rng(0, None, 96)
    channels: int = rng(4, None, 32)           # small_resnet: channels of its first stage (w, 2w, 4w, 8w)
    # decay of an exponential moving average of the weights, which is what gets evaluated; 0 = off
    ema: float = rng(0.0, 1.0, 0.0)
    P: int = rng(1, None, 16)
    K: int = rng(1, None, 4)
    lr: float = rng(0.0, 1.0, 3e-3)      # paper: 3.5e-4
    weight_decay: float = rng(0.0, 1.0, 5e-4)
    warmup_epochs: int = rng(0, None, 1)
    label_smoothing: float = rng(0.0, 1.0, 0.1)
    triplet_margin: float = rng(0.0, None, 0.3)
    # features the triplet loss sees: "normalised" (L2, toy default: with raw features the short toy
    # runs collapse the feature norm and stay near chance) or "raw" (BoT/torchreid, for long runs)
    triplet_features: str = one_of("normalised", "raw", default="normalised")
    random_erasing_p: float = rng(0.0, 1.0, 0.5)
    # synthetic samples mixed into each batch of P x K real ones. Toy: 32; the oracle gain over seeds
    # 8-15 (mean / sd of the paired differences): Market 1.1 at 16, 2.2 at 32, 1.8 at 64; CUHK03 0.9,
    # 1.2, 1.4 (README, "The instrument")
    syn_per_batch: int = rng(0, None, 32)
    # which synthetic candidates a step draws: "batch_ids" (images of the identities of the step's
    # real batch, so the batch-hard triplet finds their positives) or "uniform" (any training
    # identity). Measured on the toy Market oracle (benchmarks/sweep_real_size.py, seeds 0-3, 2/4/8
    # real images per identity): uniform minus batch_ids = +0.2 [-1.5, +1.9], -0.7 [-1.7, +0.3],
    # -1.5 [-6.4, +3.4] mAP points; no evidence for either, so the default stays uniform.
    syn_draw: str = one_of("batch_ids", "uniform", default="uniform")
    eval_batch_size: int = rng(1, None, 256)
    threads: int = rng(0, None, 0)             # CPU intra-op threads while training (0 = torch default)


@dataclass
class FaceParams:
    backbone: str = one_of("resnet50", "resnet18", "small_resnet", default="small_resnet")
    pretrained: str = ""                # local ImageNet weights (torchvision format) for resnet50/18; "" = random
    size: int = rng(16, None, 32)
    epochs: int = rng(1, None, 8)
    # optimizer steps of a run; 0 = epochs x batches per epoch. Toy: 384 (32 epochs of the toy CASIA)
    # with stem_stride 2: the run costs half of 192 steps at stride 1, for the same oracle gain
    steps: int = rng(0, None, 384)
    ema: float = rng(0.0, 1.0, 0.0)            # as reid.ema
    batch_size: int = rng(1, None, 64)
    lr: float = rng(0.0, 10.0, 0.02)      # paper: 0.1
    momentum: float = rng(0.0, 1.0, 0.9)
    weight_decay: float = rng(0.0, 1.0, 5e-4)
    cosface_s: float = rng(0.0, None, 16.0)  # paper: 64 (from scratch on the tiny toy set s=64 stays at chance)
    cosface_m: float = rng(0.0, 1.0, 0.35)
    embedding_dim: int = rng(2, None, 128)
    width: int = rng(4, None, 16)              # small_resnet: channels of its first stage
    # small_resnet: stride of its first convolution (toy: 2, with 384 steps; resnet50/18 ignore it)
    stem_stride: int = one_of(1, 2, default=2)
    align: str = one_of("none", "mtcnn", default="none")   # mtcnn: 5-point alignment to 112x112 (rgsyn.data.align)
    flip_eval: bool = True
    random_erasing_p: float = rng(0.0, 1.0, 0.5)   # probability per image when a variant turns erasing on
    syn_per_batch: int = rng(0, None, 16)
    syn_draw: str = one_of("batch_ids", "uniform", default="uniform")   # as reid.syn_draw
    threads: int = rng(0, None, 0)             # CPU intra-op threads while training (0 = torch default)


@dataclass
class SelectionParams:
    fraction: float = rng(0.0, 1.0, 0.5)     # share of candidates kept
    rescore_every: int = rng(1, None, 1)      # steps between rescoring the candidates
    candidate_multiplier: int = rng(1, None, 2)
    virtual_lr: float = rng(0.0, None, 0.1)   # step size of the virtual lookahead update
    # head: cheapest (benchmarks/bench_selection_overhead.py: CPU s/step head < head_last_block < all)
    virtual_params: str = one_of("head", "head_last_block", "all", default="head")
    virtual_batch: int = rng(0, None, 16)      # real images in the virtual step (strided subset; 0 = all)


@dataclass
class RealVariant:
    """A row trained on the real training split only."""

    random_erasing: bool = False


@dataclass
class SynVariant:
    """A row trained on real + synthetic data."""

    # cold | rl-<key of rl.reward_variants> | oracle (toy/smoke only) | real: no synthetic images;
    # every synthetic slot of a batch takes another augmented draw of the real training split (the
    # compute-matched control `real_plus`: what the larger batch alone gives)
    synthetic: str = "rl-full"
    selection: str = one_of("none", "random", "lookahead", default="none")
    random_erasing: bool = False
    # kept | shuffled: the synthetic set's identity labels permuted among the training identities,
    # none keeping its own (the negative control `syn_shuffled`: right images, wrong labels)
    labels: str = one_of("kept", "shuffled", default="kept")


@dataclass
class Variant:
    """The resolved view of either kind of row (what `Params.variant` returns)."""

    synthetic: str = "none"      # none | real | cold | rl-<reward variant> | oracle
    selection: str = "none"      # none | random | lookahead
    random_erasing: bool = False
    labels: str = "kept"         # kept | shuffled


def _default_variants() -> dict[str, RealVariant]:
    return {"real": RealVariant(), "real_re": RealVariant(random_erasing=True)}


def _default_syn_variants() -> dict[str, SynVariant]:
    return {
        "syn_cold": SynVariant(synthetic="cold"),
        "syn_rl": SynVariant(synthetic="rl-full"),
        "ours": SynVariant(synthetic="rl-full", selection="lookahead"),
        "ours_no_sem": SynVariant(synthetic="rl-no_sem", selection="lookahead"),
        "ours_no_cov": SynVariant(synthetic="rl-no_cov", selection="lookahead"),
        "ours_no_exp": SynVariant(synthetic="rl-no_exp", selection="lookahead"),
        "ours_random_sel": SynVariant(synthetic="rl-full", selection="random"),
        # the controls (rgsyn.report.controls). Positive: the ceiling only a procedural world gives,
        # new renders of the training identities; negative: the same renders with their identity
        # labels permuted; compute-matched: the synthetic slots filled with real draws
        "syn_oracle": SynVariant(synthetic="oracle"),
        "syn_shuffled": SynVariant(synthetic="oracle", labels="shuffled"),
        "real_plus": SynVariant(synthetic="real"),
    }


@dataclass
class ComputeParams:
    """How the stages compute (rgsyn/precision.py). Not part of the paper's structure."""

    # bf16 | fp16 autocast (fp16 with a gradient scaler) or fp32 (TF32 matmuls on CUDA).
    # toy/smoke: fp32 (CPU); paper: bf16. Log-probs and the KL are fp32 arithmetic in every mode.
    precision: str = one_of("bf16", "fp16", "fp32", default="fp32")
    compile: bool = False        # torch.compile the sampler's transformer (RL rollouts, generation)


@dataclass
class TrackingParams:
    uri: str = "sqlite:///mlflow.db"   # overridden by $MLFLOW_TRACKING_URI
    experiment: str = "rgsyn"


@dataclass
class Params:
    profile: str = one_of("toy", "smoke", "paper", default="toy")
    # downstream training seeds (one run per seed; verdicts are paired over them). Four: a stage trains
    # its seeds two at a time on two cores (rgsyn.stages.train_seeds), so a fourth seed costs no wall time
    seeds: list[int] = _list(0, 1, 2, 3)
    # more seeds for the control rows `real`, `syn_oracle` and `syn_shuffled` only (`seeds_of`):
    # resolving the positive control takes more seeds than the other rows can afford, and the
    # negative control is held to the same power; disjoint from `seeds`
    control_seeds: list[int] = _list(4, 5, 6, 7, 8, 9, 10, 11)
    generator_seed: int = rng(0, None, 0)         # seed of the prior, cold-start and RL stages
    device: str = one_of("auto", "cpu", "cuda", default="auto")
    compute: ComputeParams = field(default_factory=ComputeParams)
    # Prefix of the training stages' commands in dvc.yaml (prior, coldstart, encoder, rl, generate,
    # train): "" runs `rgsyn <stage>` in one process; "accelerate launch --multi_gpu --num_processes 8
    # -m" runs `python -m rgsyn <stage>` on 8 processes (GPUs), each on its share of the work.
    launcher: str = ""
    data: DataParams = field(default_factory=DataParams)
    prior: PriorParams = field(default_factory=PriorParams)
    sampler: SamplerParams = field(default_factory=SamplerParams)
    coldstart: ColdstartParams = field(default_factory=ColdstartParams)
    generate: GenerateParams = field(default_factory=GenerateParams)
    encoder: EncoderParams = field(default_factory=EncoderParams)
    rl: RLParams = field(default_factory=RLParams)
    reid: ReidParams = field(default_factory=ReidParams)
    face: FaceParams = field(default_factory=FaceParams)
    selection: SelectionParams = field(default_factory=SelectionParams)
    variants: dict[str, RealVariant] = field(default_factory=_default_variants)
    syn_variants: dict[str, SynVariant] = field(default_factory=_default_syn_variants)
    tracking: TrackingParams = field(default_factory=TrackingParams)

    def variant(self, name: str) -> Variant:
        """The row `name` from `variants` (real only) or `syn_variants` (real + synthetic)."""
        if name in self.variants:
            return Variant(random_erasing=self.variants[name].random_erasing)
        if name in self.syn_variants:
            v = self.syn_variants[name]
            return Variant(synthetic=v.synthetic, selection=v.selection, random_erasing=v.random_erasing,
                           labels=v.labels)
        raise ConfigError(f"unknown variant {name!r}; defined in variants: {sorted(self.variants)}, "
                          f"in syn_variants: {sorted(self.syn_variants)}")

    def seeds_of(self, variant: str) -> list[int]:
        """The seeds row `variant` trains on: `seeds`, plus `control_seeds` for the control rows."""
        return [*self.seeds, *(self.control_seeds if variant in CONTROL_SEED_ROWS else [])]

    def generators(self) -> list[str]:
        """Every synthetic generator: 'cold', 'rl-<reward variant>' and, where the toy world exists
        (`data.world`), 'oracle'."""
        return ["cold"] + [f"rl-{k}" for k in self.rl.reward_variants] + (["oracle"] if self.data.world else [])


# ------------------------------------------------------------------------------- loading
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, meta: dict) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for section {tp.__name__}, got {value!r}")
        return _build(tp, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]", {}) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{key}.{k}", {}) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(value, inner, key, meta)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
    lo, hi = meta.get("range", (None, None))
    if lo is not None and value < lo or hi is not None and value > hi:
        allowed = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        raise ConfigError(f"{key}: value {value!r} is out of range; allowed {allowed}")
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{key}: value {value!r} is not allowed; choose one of {list(choices)}")
    return value


def _build(cls: type, raw: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        bad = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        close = difflib.get_close_matches(unknown[0], list(fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown key {bad!r}{hint}; allowed keys{' in ' + prefix if prefix else ''}: "
                          f"{sorted(fields)}")
    kwargs = {}
    for name, value in raw.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(value, hints[name], key, dict(fields[name].metadata))
    return cls(**kwargs)


# Trained benchmarks and their generator domain (rgsyn.paths.DOMAIN_OF without rfw_bias).
DOMAIN_OF_TRAINED = {"market1501": "persons", "cuhk03": "persons", "casia_face": "faces"}

# `syn_variants.<row>.synthetic` of the compute-matched control: real draws in the synthetic slots
REAL_DRAWS = "real"
# The rows of the toy controls that also train on `control_seeds`: both sides of the positive control
# (syn_oracle - real), and the negative control (syn_shuffled - real) at the same power
CONTROL_SEED_ROWS = ("real", "syn_oracle", "syn_shuffled")

# Mappings that an overlay replaces whole instead of merging into (their keys are row names).
REPLACED_MAPPINGS = ("variants", "syn_variants", "reward_variants", "oracle")


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in REPLACED_MAPPINGS:
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def to_dict(params: Any) -> dict:
    return dataclasses.asdict(params)


def from_dict(raw: dict | None) -> Params:
    params = _build(Params, raw or {})
    for name, v in params.syn_variants.items():
        if v.synthetic == "oracle" and not params.data.world:
            raise ConfigError(
                f"syn_variants.{name}.synthetic: 'oracle' needs the toy world (data.world: true); with real "
                "data there is no renderer of the training identities, so the oracle row is not applicable: "
                f"remove syn_variants.{name}")
        if v.synthetic not in [*params.generators(), REAL_DRAWS]:
            raise ConfigError(
                f"syn_variants.{name}.synthetic: value {v.synthetic!r} is not allowed; choose one of "
                f"{[*params.generators(), REAL_DRAWS]} ('rl-<name>' with <name> a key of rl.reward_variants)")
        if v.synthetic == REAL_DRAWS and (v.labels != "kept" or v.selection != "none"):
            raise ConfigError(f"syn_variants.{name}: synthetic 'real' (real draws in the synthetic slots) "
                              "takes labels: kept and selection: none")
    both = sorted(set(params.variants) & set(params.syn_variants))
    if both:
        raise ConfigError(f"variant {both[0]!r} is defined in both variants and syn_variants")
    if params.generate.oracle and not params.data.world:
        raise ConfigError(f"generate.oracle: value {params.generate.oracle} is not allowed with data.world: "
                          "false (the oracle renders the toy world); set generate.oracle: {}")
    bad = {b: d for b, d in params.generate.oracle.items() if DOMAIN_OF_TRAINED.get(b) != d}
    if bad:
        b = sorted(bad)[0]
        raise ConfigError(f"generate.oracle.{b}: value {bad[b]!r} is not allowed; expected benchmark -> domain "
                          f"pairs from {DOMAIN_OF_TRAINED}")
    if not params.seeds:
        raise ConfigError("seeds: expected at least one seed, got []")
    for key in ("seeds", "control_seeds"):
        seen = getattr(params, key)
        if len(set(seen)) != len(seen):
            raise ConfigError(f"{key}: value {seen} repeats a seed")
    if set(params.seeds) & set(params.control_seeds):
        free = [s for s in range(max(params.seeds) + 1, max(params.seeds) + 1 + 2 * len(params.control_seeds) + 1)
                if s not in params.seeds][:len(params.control_seeds)]
        raise ConfigError(f"control_seeds: value {params.control_seeds} shares seeds with seeds {params.seeds}; "
                          f"the control rows train on both lists, so they must be disjoint (e.g. control_seeds: "
                          f"{free}, or [] for none)")
    for domain in params.coldstart.image_size:
        if domain not in ("persons", "faces"):
            raise ConfigError(f"coldstart.image_size.{domain}: unknown domain; allowed keys: ['faces', 'persons']")
    return params


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw or {}


def load(path: str | Path = "params.yaml") -> Params:
    """Load and validate a params file (a full file or an overlay on the toy defaults)."""
    try:
        return from_dict(read_yaml(path))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def profile_dict(profile: str) -> dict:
    """The full params dict of a profile: toy defaults merged with configs/<profile>.yaml."""
    base = to_dict(Params())
    if profile == "toy":
        return base
    overlay = read_yaml(Path(__file__).resolve().parent.parent / "configs" / f"{profile}.yaml")
    merged = _merge(base, overlay)
    from_dict(merged)  # validate
    return merged


def params_hash(params: Params) -> str:
    blob = json.dumps(to_dict(params), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
