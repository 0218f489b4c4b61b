"""`rgsyn estimate`: the compute a params file asks for, before it is launched.

    rgsyn estimate [--params params.yaml] [--tflops 400] [--gpus 8] [--json]

FLOPs are counted, not guessed: `torch.utils.flop_counter.FlopCounterMode` runs each network of
the configured size on the meta device (shapes only, no memory, seconds on a CPU) at batch 1:
- the DiT at `prior.arch` (forward; backward into the identity head / LoRA, which needs the input
  gradient of every block; backward of all weights for the prior);
- the SD VAE (`prior.vae` set; none in pixel space): encode at the image size, decode;
- the downstream backbones at their input sizes (forward + backward) and the identity encoders.
One multiply-add counts 2 FLOPs. Per stage, the per-image counts are multiplied by the stage's
work (PAPER.md steps 2-5 as the code runs them):
- coldstart: every training image and its mirror encoded once (latent cache), then
  `steps x batch_size` DiT forward + backward;
- rl, per domain x reward variant: `steps x` [rollout: trajectories x T x (2 with CFG) DiT forwards
  + VAE decode + reward and gold encoders; update: `inner_epochs x` trajectories x trained steps x
  (2 with CFG) x (policy forward + reference forward + backward)], T = sampler.num_inference_steps
  and trained steps = the well-conditioned ones (rl.min_sigma_ratio), at most rl.train_timesteps;
- generate, per benchmark x generator: images x (T x CFG DiT forwards + decode) + the encoder on
  the synthetic and the real images;
- encoder / train: epochs x images per epoch x backbone forward + backward (+ synthetic images per
  batch; lookahead selection adds 2 candidate forwards and a virtual forward + backward on
  `selection.virtual_batch` real images per step), times seeds and variants.
Evaluation passes and the toy-world/data stages are not counted (a small share at paper scale).

The work is taken from the functions the stages size themselves by, so the two cannot drift apart
(tests/test_estimate.py checks it against a training run and an RL update): downstream steps from
the task's `steps` / `real_batch` (rgsyn.downstream.tasks: the task the train and encoder stages train
by), lookahead candidates and the virtual batch from the selector (`n_candidates`, `virtual_rows`),
the RL trained steps from `rgsyn.rl.rollout.trained_step_count` over the sampler's well-conditioned
steps (`rgsyn.rl.dpok.well_conditioned_steps` of the prior's scheduler,
`rgsyn.generator.prior.built_scheduler`). A re-ID epoch is counted as images // (P x K) batches, an
upper bound of the PK sampler's count (equal when every identity has a multiple of K images and
their chunks fill whole batches).

Memory at peak (per GPU, per stage): parameters in fp32 + 12 bytes per trainable parameter
(gradient + Adam's two moments) + activations. Activations are measured on the meta device as the
bytes of the tensors autograd saves for the backward (`torch.autograd.graph.saved_tensors_hooks`)
at batch 1, times the micro-batch, at 2 bytes an element under bf16/fp16 and 4 under fp32; plus
the latent cache and the recorded RL trajectories. Inference-only stages count parameters and
the batch's latents (transient activations are small against the weights).

GPU-hours = FLOPs / (sustained throughput x 3600 s), default 400 TFLOP/s bf16 per GPU (about 40%
of an H200's dense bf16 peak). Wall time on N GPUs assumes ideal data parallelism: every stage is
split across the N GPUs (its runs and, within a run, its batches), so wall = GPU-hours / N, with no
communication, data loading or start-up overhead. Dataset sizes are counted from the configured
folders when present; otherwise the official counts (rgsyn.data.check.OFFICIAL), which for CASIA
are the full set and so an upper bound for the paper's subset.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import torch

from rgsyn.config import Params

SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
              block_out_channels=(128, 256, 512, 512), norm_num_groups=32,
              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)


# --------------------------------------------------------------------------------- counting
def count_flops(fn) -> int:
    """Total FLOPs of `fn()` as `torch.utils.flop_counter.FlopCounterMode` counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as mode:
        fn()
    return int(mode.get_total_flops())


def saved_bytes(fn, bytes_per_element: int) -> int:
    """Bytes of the tensors autograd saves for backward while `fn()` runs (meta tensors too)."""
    seen: dict[int, int] = {}

    def pack(t):
        seen[id(t)] = t.numel()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values()) * bytes_per_element


@dataclass
class NetCost:
    """Per-image costs of one network."""

    forward: int          # FLOPs
    backward: int         # FLOPs of the backward that the stage runs
    activations: int      # bytes saved for backward per image
    params: int           # parameter count
    trainable: int        # trained parameter count


BATCH = 2   # counted at batch 2 (batch norm in train mode needs 2 values) and divided by it


def _fwd_bwd(model, make_inputs, loss_of, trainable, bpe: int) -> NetCost:
    model.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
    with torch.no_grad():
        fwd = count_flops(lambda: loss_of(model, *make_inputs()))
    total = count_flops(lambda: loss_of(model, *make_inputs()).backward())
    acts = saved_bytes(lambda: loss_of(model, *make_inputs()), bpe)
    n = sum(p.numel() for p in model.parameters())
    return NetCost(fwd // BATCH, (total - fwd) // BATCH, acts // BATCH, n, sum(p.numel() for p in trainable))


def dit_costs(params: Params, bpe: int) -> dict[str, NetCost]:
    """DiT at prior.arch: 'head' (identity head trained: cold start), 'lora' (RL: the adapter's
    own parameters are counted analytically; its backward is the head's, through every block)
    and 'full' (prior pretraining)."""
    from rgsyn.generator.architecture import build_dit
    from rgsyn.generator.identity_head import identity_head_parameters

    a = params.prior.arch
    out_ch = 2 * a.in_channels if params.prior.pretrained else None
    with torch.device("meta"):
        model = build_dit(a if a.num_classes else _with_classes(a), out_channels=out_ch)

    def inputs():
        return (torch.randn(BATCH, a.in_channels, a.sample_size, a.sample_size, device="meta"),
                torch.zeros(BATCH, dtype=torch.long, device="meta"),
                torch.zeros(BATCH, dtype=torch.long, device="meta"))

    def loss(m, x, t, y):
        return m(x, timestep=t, class_labels=y).sample.float().square().mean()

    head = _fwd_bwd(model, inputs, loss, identity_head_parameters(model), bpe)
    full = _fwd_bwd(model, inputs, loss, list(model.parameters()), bpe)
    lora_n = _lora_params(model, params.rl.lora)
    lora = NetCost(head.forward, head.backward, head.activations, head.params, lora_n)
    return {"head": head, "lora": lora, "full": full}


def _with_classes(arch):
    from dataclasses import replace

    return replace(arch, num_classes=1000)


def _lora_params(model, lora) -> int:
    """r x (in + out) per targeted Linear (peft's LoRA A and B)."""
    n = 0
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear) and any(name == t or name.endswith("." + t) for t in lora.target_modules):
            n += lora.rank * (m.in_features + m.out_features)
    return n


def vae_costs(params: Params) -> tuple[int, int, int]:
    """(encode FLOPs, decode FLOPs, parameters) per image; zeros in pixel space."""
    if not params.prior.vae:
        return 0, 0, 0
    from diffusers import AutoencoderKL

    side = params.prior.arch.sample_size
    f = 2 ** (len(SD_VAE["block_out_channels"]) - 1)
    with torch.device("meta"):
        vae = AutoencoderKL(**SD_VAE, sample_size=side * f).requires_grad_(False)
    with torch.no_grad():
        enc = count_flops(lambda: vae.encode(torch.randn(1, 3, side * f, side * f, device="meta")))
        dec = count_flops(lambda: vae.decode(torch.randn(1, 4, side, side, device="meta")))
    return enc, dec, sum(p.numel() for p in vae.parameters())


def backbone_costs(params: Params, kind: str, num_classes: int, bpe: int) -> NetCost:
    """The downstream model (all weights trained) at its input size."""
    with torch.device("meta"):
        if kind == "reid":
            from rgsyn.downstream.reid import build_reid_model

            p = params.reid
            net = build_reid_model(p.backbone, num_classes, p.height, p.width, "", p.channels)
            shape = (BATCH, 3, p.height, p.width)

            def loss(m, x, y):
                logits, feats = m(x, with_features=True)
                return logits.float().mean() + feats.float().mean()
        else:
            from rgsyn.downstream.face import build_face_model

            p = params.face
            net = build_face_model(p, num_classes, pretrained="")   # shapes only: the file is not read
            shape = (BATCH, 3, p.size, p.size)

            def loss(m, x, y):
                return m(x, y).float().mean()
    net.train()

    def inputs():
        return torch.randn(*shape, device="meta"), torch.zeros(BATCH, dtype=torch.long, device="meta")

    return _fwd_bwd(net, inputs, loss, list(net.parameters()), bpe)


# ---------------------------------------------------------------------------- dataset sizes
def dataset_sizes(params: Params) -> dict[str, dict[str, int]]:
    """{benchmark: {"ids", "images"}} of the training splits: counted from the configured folders
    when they exist, else the official counts (paper) or the toy world's params (toy/smoke)."""
    from rgsyn.data.check import OFFICIAL

    p = params.data.paths
    out: dict[str, dict[str, int]] = {}
    for bench in ("market1501", "cuhk03", "casia_face"):
        try:
            out[bench] = _count_training(params, bench)
            out[bench]["source"] = "counted"
            continue
        except Exception:   # noqa: BLE001 - absent or unreadable: fall back to the declared sizes
            pass
        if params.data.world:
            w = {"market1501": params.data.market, "cuhk03": params.data.cuhk03}.get(bench)
            if w is not None:
                out[bench] = {"ids": w.n_train_ids, "images": w.n_train_ids * w.cams_per_id * w.imgs_per_id_cam}
            else:
                f = params.data.faces
                out[bench] = {"ids": f.n_train_ids, "images": f.n_train_ids * f.imgs_per_id}
            out[bench]["source"] = "toy world params"
        else:
            o = OFFICIAL[bench]
            o = o[p.cuhk03_mode]["train"] if bench == "cuhk03" else o.get("train", o)
            out[bench] = {"ids": o["ids"], "images": o["images"], "source": "official"}
    return out


def _count_training(params, benchmark: str) -> dict[str, int]:
    from rgsyn.data.splits import training_split

    split = training_split(params, benchmark)
    return {"ids": len(set(split.identities)), "images": len(split)}


# ------------------------------------------------------------------------------ stage costs
@dataclass
class StageCost:
    stage: str
    runs: int            # stage instances (domains x variants x seeds ...)
    flops: float         # total over the runs
    peak_bytes: float    # per GPU, the largest run
    note: str = ""


def _weights(n: int, trainable: int) -> int:
    return 4 * n + 12 * trainable   # fp32 weights + gradient + Adam's two moments


@dataclass
class _Shared:
    """What the stages' costs share: the params, dataset sizes and per-image network costs."""

    params: Params
    sizes: dict          # dataset_sizes
    domains: dict        # {"persons": sizes, "faces": sizes}
    dit: dict            # dit_costs
    vae: tuple           # vae_costs: (encode, decode, parameters)
    nets: dict           # {"persons": re-ID NetCost, "faces": face NetCost}
    latent: int          # bytes of one fp32 latent
    cfg: int             # 2 with classifier-free guidance, else 1


def shared_costs(params: Params) -> _Shared:
    bpe = 4 if params.compute.precision == "fp32" else 2
    sizes = dataset_sizes(params)
    a = params.prior.arch
    persons = {"ids": sizes["market1501"]["ids"] + sizes["cuhk03"]["ids"],
               "images": sizes["market1501"]["images"] + sizes["cuhk03"]["images"]}
    nets = {"persons": backbone_costs(params, "reid", persons["ids"], bpe),
            "faces": backbone_costs(params, "face", sizes["casia_face"]["ids"], bpe)}
    return _Shared(params, sizes, {"persons": persons, "faces": sizes["casia_face"]}, dit_costs(params, bpe),
                   vae_costs(params), nets, a.in_channels * a.sample_size ** 2 * 4,
                   2 if params.sampler.guidance_scale != 1.0 else 1)


def stage_costs(params: Params) -> list[StageCost]:
    """The per-stage totals described in the module docstring."""
    s = shared_costs(params)
    out = [_prior_cost(s)] if params.prior.steps else []
    return out + [_coldstart_cost(s), _encoder_cost(s), _rl_cost(s), _generate_cost(s), _train_cost(s)]


# One step of each stage's inner loop, in FLOPs: the stage totals below are these times the steps,
# and `rgsyn preflight` scales a step it measured at shrunk counts by their ratio.
def prior_step_flops(s: _Shared, batch: int) -> float:
    """One prior pretraining step: `batch` images, DiT forward + backward of all weights."""
    return batch * (s.dit["full"].forward + s.dit["full"].backward)


def coldstart_step_flops(s: _Shared, batch: int) -> float:
    """One cold-start step: `batch` latents, DiT forward + backward into the head (and LoRA)."""
    h = s.dit["lora"] if s.params.coldstart.train_lora else s.dit["head"]
    return batch * (h.forward + h.backward)


def latent_cache_flops(s: _Shared, n_images: int) -> float:
    """The cold start's latent cache: every image and its mirror through the VAE encoder."""
    return 2 * n_images * s.vae[0]


def encoder_step_flops(s: _Shared, domain: str, batch: int) -> float:
    """One identity-encoder (or real-only downstream) step: `batch` images forward + backward."""
    return batch * (s.nets[domain].forward + s.nets[domain].backward)


def rl_update_flops(s: _Shared, domain: str, n_traj: int, T: int, t_train: int) -> float:
    """One RL update: the rollout (`n_traj` trajectories x T x CFG DiT forwards, decode, reward and
    gold encoders) and the policy update (inner_epochs x trajectories x trained steps x CFG x
    (policy + reference forward + backward))."""
    lora, cfg = s.dit["lora"], s.cfg
    roll = n_traj * (T * cfg * lora.forward + s.vae[1] + 2 * s.nets[domain].forward)
    return roll + s.params.rl.inner_epochs * n_traj * t_train * cfg * (2 * lora.forward + lora.backward)


def generate_flops(s: _Shared, domain: str, n_images: int, T: int) -> float:
    """`n_images` synthetic images: T x CFG DiT forwards, decode, and the encoder on each."""
    return n_images * (T * s.cfg * s.dit["head"].forward + s.vae[1] + s.nets[domain].forward)


def _prior_cost(s: _Shared) -> StageCost:
    pp, full = s.params.prior, s.dit["full"]
    f = pp.steps * prior_step_flops(s, pp.batch_size)
    peak = _weights(full.params, full.trainable) + pp.batch_size * full.activations
    return StageCost("prior", 1, f, peak, f"{pp.steps} steps x {pp.batch_size}")


def _coldstart_cost(s: _Shared) -> StageCost:
    cs, vae_n = s.params.coldstart, s.vae[2]
    h = s.dit["lora"] if cs.train_lora else s.dit["head"]
    f = sum(latent_cache_flops(s, n["images"]) + cs.steps * coldstart_step_flops(s, cs.batch_size)
            for n in s.domains.values())
    cache = max(n["images"] for n in s.domains.values()) * s.latent * (2 if s.params.prior.vae else 1)
    peak = _weights(h.params, h.trainable) + 4 * vae_n + cs.batch_size * h.activations + cache
    return StageCost("coldstart", len(s.domains), f, peak, f"{cs.steps} steps x {cs.batch_size}; latent cache")


def _encoder_cost(s: _Shared) -> StageCost:
    from rgsyn.downstream.tasks import domain_task

    tasks = {k: domain_task(s.params, k) for k in s.domains}
    f = 2 * sum(tasks[k].p.epochs * encoder_step_flops(s, k, n["images"]) for k, n in s.domains.items())
    peak = max(_weights(c.params, c.params) + tasks[k].real_batch() * c.activations for k, c in s.nets.items())
    return StageCost("encoder", 2 * len(s.domains), f, peak, "reward + gold encoder per domain")


def _rl_cost(s: _Shared) -> StageCost:
    rl, T, cfg, lora = s.params.rl, s.params.sampler.num_inference_steps, s.cfg, s.dit["lora"]
    n_traj = rl.ids_per_step * rl.samples_per_id
    t_train = rl_trained_step_count(s.params)
    n_var = len(rl.reward_variants)
    f = sum(n_var * rl.steps * rl_update_flops(s, k, n_traj, T, t_train) for k in s.domains)
    micro = math.ceil(n_traj / max(1, rl.minibatches)) * cfg
    peak = (_weights(lora.params, lora.trainable) + 4 * s.vae[2] + micro * lora.activations
            + (T + 1) * n_traj * s.latent + 2 * 4 * max(c.params for c in s.nets.values()))
    return StageCost("rl", n_var * len(s.domains), f, peak,
                     f"{rl.steps} updates x {n_traj} trajectories x {T} steps, CFG x{cfg}")


def _generate_cost(s: _Shared) -> StageCost:
    p, head, T = s.params, s.dit["head"], s.params.sampler.num_inference_steps
    gens, per_id = len(p.generators()), p.generate.per_identity
    f = 0.0
    for bench, n in s.sizes.items():
        domain = "faces" if bench == "casia_face" else "persons"
        f += gens * (generate_flops(s, domain, n["ids"] * per_id, T) + n["images"] * s.nets[domain].forward)
    peak = 4 * (head.params + s.vae[2]) + p.generate.batch_size * s.cfg * s.latent * 4
    return StageCost("generate", gens * len(s.sizes), f, peak, f"{per_id} per identity x {gens} generators")


def _train_cost(s: _Shared) -> StageCost:
    from rgsyn.downstream.tasks import benchmark_task

    p = s.params
    f, runs, peak = 0.0, 0, 0.0
    for bench, n in s.sizes.items():
        c, task = s.nets["faces" if bench == "casia_face" else "persons"], benchmark_task(p, bench)
        steps = train_steps(p, bench, n["images"])
        for name in [*p.variants, *p.syn_variants]:
            n_seeds = len(p.seeds_of(name))
            f += n_seeds * steps * train_step_flops(p, p.variant(name), task, c)
            runs += n_seeds
        peak = max(peak, _weights(c.params, c.params) + (task.real_batch() + task.p.syn_per_batch) * c.activations)
    extra = f" (+{len(p.control_seeds)} for the control rows)" if p.control_seeds else ""
    return StageCost("train", runs, f, peak, f"{len(p.seeds)} seed(s){extra} x variants x benchmarks")


def train_step_flops(params: Params, variant, task, c: NetCost) -> float:
    """One optimizer step of a `train` run: the real batch and the synthetic samples forward +
    backward; lookahead adds its candidates' two forwards and the virtual step every `rescore_every`."""
    from rgsyn.selection import build_selector

    batch, syn = task.real_batch(), task.p.syn_per_batch
    step_f = (batch + (syn if variant.synthetic != "none" else 0)) * (c.forward + c.backward)
    if variant.selection == "lookahead":
        sel = build_selector(variant.selection, params.selection)
        vb = sel.virtual_rows(batch)
        step_f += (2 * sel.n_candidates(syn) * c.forward + vb * (c.forward + c.backward)) / params.selection.rescore_every
    return step_f


def train_steps(params: Params, benchmark: str, n_images: int) -> int:
    """Optimizer steps of one `train` run of `benchmark` on `n_images` real images: its task's
    `steps` (rgsyn.downstream.tasks.benchmark_task, the task the train stage trains by)."""
    from rgsyn.downstream.tasks import benchmark_task

    return benchmark_task(params, benchmark).steps(n_images)


def rl_trained_step_count(params: Params) -> int:
    """Denoising steps every RL update trains on (rgsyn.rl.rollout.trained_step_count of the eligible ones)."""
    from rgsyn.rl.rollout import trained_step_count

    return trained_step_count(len(rl_eligible_steps(params)), params.rl.train_timesteps)


def rl_eligible_steps(params: Params) -> list[int]:
    """The denoising steps the RL update may train on, as the rl stage finds them: the sampler's
    schedule (the prior's scheduler, rgsyn.generator.prior.built_scheduler) under rl.min_sigma_ratio."""
    from rgsyn.generator.prior import built_scheduler
    from rgsyn.generator.sampler import PolicySampler
    from rgsyn.rl.dpok import well_conditioned_steps

    sp = params.sampler
    with torch.device("meta"):
        stub = torch.nn.Linear(1, 1)   # the schedule needs no network; the sampler only holds it
    sampler = PolicySampler(stub, built_scheduler(params.prior), None, sp.num_inference_steps, sp.eta,
                            sp.guidance_scale)
    return well_conditioned_steps(sampler.sigmas, params.rl.min_sigma_ratio)


# ------------------------------------------------------------------------------------ table
def estimate_table(params: Params, tflops: float = 400.0, gpus: int = 8, measured: dict | None = None):
    """(pandas DataFrame, Markdown string) of the per-stage estimate.

    `measured` ({stage: seconds}, optional) adds the measured stage times next to the estimate
    (the report passes its timing table's per-stage totals)."""
    import pandas as pd

    if tflops <= 0 or gpus < 1:
        from rgsyn.errors import ConfigError

        raise ConfigError(f"estimate: --tflops must be > 0 and --gpus >= 1 (got {tflops}, {gpus})")
    rows = []
    for c in stage_costs(params):
        gpu_h = c.flops / (tflops * 1e12) / 3600
        row = {"stage": c.stage, "runs": c.runs, "PFLOP": c.flops / 1e15, "GPU-hours": gpu_h,
               f"wall h on {gpus} GPUs": gpu_h / gpus, "peak GiB/GPU": c.peak_bytes / 2 ** 30, "work": c.note}
        if measured is not None:
            row["measured h"] = measured.get(c.stage, float("nan")) / 3600
        rows.append(row)
    df = pd.DataFrame(rows)
    total = {"stage": "total", "runs": int(df["runs"].sum()), "PFLOP": df["PFLOP"].sum(),
             "GPU-hours": df["GPU-hours"].sum(), f"wall h on {gpus} GPUs": df[f"wall h on {gpus} GPUs"].sum(),
             "peak GiB/GPU": df["peak GiB/GPU"].max(), "work": ""}
    if measured is not None:
        total["measured h"] = df["measured h"].sum(min_count=1)
    df = pd.concat([df, pd.DataFrame([total])], ignore_index=True)
    head = (f"Estimate for profile `{params.profile}`, precision {params.compute.precision}, at "
            f"{tflops:g} TFLOP/s sustained per GPU, ideal scaling on {gpus} GPU(s).\n\n")
    return df, head + df.to_markdown(index=False, floatfmt=".3g")


def run(params: Params, tflops: float = 400.0, gpus: int = 8, as_json: bool = False) -> dict:
    df, md = estimate_table(params, tflops, gpus)
    if as_json:
        print(json.dumps(df.to_dict(orient="records"), indent=2))
    else:
        print(md)
    return df.to_dict(orient="records")
