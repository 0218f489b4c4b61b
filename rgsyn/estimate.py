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
            net = build_reid_model(p.backbone, num_classes, p.height, p.width, "")
            shape = (BATCH, 3, p.height, p.width)

            def loss(m, x, y):
                logits, feats = m(x, with_features=True)
                return logits.float().mean() + feats.float().mean()
        else:
            from rgsyn.downstream.face import build_face_model

            p = params.face
            net = build_face_model(p, num_classes)
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


def stage_costs(params: Params) -> list[StageCost]:
    """The per-stage totals described in the module docstring."""
    bpe = 4 if params.compute.precision == "fp32" else 2
    sizes = dataset_sizes(params)
    d = dit_costs(params, bpe)
    enc_f, dec_f, vae_n = vae_costs(params)
    a = params.prior.arch
    latent = a.in_channels * a.sample_size ** 2 * 4
    sp, rl, cs = params.sampler, params.rl, params.coldstart
    cfg = 2 if sp.guidance_scale != 1.0 else 1
    T = sp.num_inference_steps
    persons = {"ids": sizes["market1501"]["ids"] + sizes["cuhk03"]["ids"],
               "images": sizes["market1501"]["images"] + sizes["cuhk03"]["images"]}
    domains = {"persons": persons, "faces": sizes["casia_face"]}
    reid = backbone_costs(params, "reid", persons["ids"], bpe)
    face = backbone_costs(params, "face", sizes["casia_face"]["ids"], bpe)
    enc_of = {"persons": reid, "faces": face}
    weights = lambda n, trainable: 4 * n + 12 * trainable   # noqa: E731 - fp32 + grad + Adam
    out = []

    if params.prior.steps:
        f = params.prior.steps * params.prior.batch_size * (d["full"].forward + d["full"].backward)
        peak = weights(d["full"].params, d["full"].trainable) + params.prior.batch_size * d["full"].activations
        out.append(StageCost("prior", 1, f, peak, f"{params.prior.steps} steps x {params.prior.batch_size}"))

    h = d["lora"] if cs.train_lora else d["head"]
    f = sum(2 * n["images"] * enc_f + cs.steps * cs.batch_size * (h.forward + h.backward) for n in domains.values())
    cache = max(n["images"] for n in domains.values()) * latent * (2 if params.prior.vae else 1)
    peak = weights(h.params, h.trainable) + 4 * vae_n + cs.batch_size * h.activations + cache
    out.append(StageCost("coldstart", len(domains), f, peak, f"{cs.steps} steps x {cs.batch_size}; latent cache"))

    n_enc = 2 * sum(n["images"] * _epochs(params, k) * (enc_of[k].forward + enc_of[k].backward)
                    for k, n in domains.items())
    peak = max(weights(c.params, c.params) + _batch(params, k) * c.activations for k, c in enc_of.items())
    out.append(StageCost("encoder", 2 * len(domains), n_enc, peak, "reward + gold encoder per domain"))

    n_traj = rl.ids_per_step * rl.samples_per_id
    t_train = len(_trained_steps(params))
    t_train = t_train if rl.train_timesteps <= 0 else min(t_train, rl.train_timesteps)
    n_var = len(rl.reward_variants)
    f = 0.0
    for k in domains:
        roll = n_traj * (T * cfg * d["lora"].forward + dec_f + 2 * enc_of[k].forward)
        upd = rl.inner_epochs * n_traj * t_train * cfg * (2 * d["lora"].forward + d["lora"].backward)
        f += n_var * rl.steps * (roll + upd)
    micro = math.ceil(n_traj / max(1, rl.minibatches)) * cfg
    peak = (weights(d["lora"].params, d["lora"].trainable) + 4 * vae_n + micro * d["lora"].activations
            + (T + 1) * n_traj * latent + 2 * 4 * max(reid.params, face.params))
    out.append(StageCost("rl", n_var * len(domains), f,
                         peak, f"{rl.steps} updates x {n_traj} trajectories x {T} steps, CFG x{cfg}"))

    gens = len(params.generators())
    per_id = params.generate.per_identity
    f = 0.0
    for bench, n in sizes.items():
        k = "faces" if bench == "casia_face" else "persons"
        imgs = n["ids"] * per_id
        f += gens * (imgs * (T * cfg * d["head"].forward + dec_f + enc_of[k].forward) + n["images"] * enc_of[k].forward)
    peak = 4 * (d["head"].params + vae_n) + params.generate.batch_size * cfg * latent * 4
    out.append(StageCost("generate", gens * len(sizes), f, peak, f"{per_id} per identity x {gens} generators"))

    n_seeds = len(params.seeds)
    f, runs, peak = 0.0, 0, 0.0
    for bench, n in sizes.items():
        k = "faces" if bench == "casia_face" else "persons"
        c = face if k == "faces" else reid
        sec = params.face if k == "faces" else params.reid
        batch = _batch(params, k)
        steps = sec.epochs * max(1, n["images"] // batch)
        for name in [*params.variants, *params.syn_variants]:
            v = params.variant(name)
            per_step = batch + (sec.syn_per_batch if v.synthetic != "none" else 0)
            step_f = per_step * (c.forward + c.backward)
            if v.selection == "lookahead":
                n_cand = sec.syn_per_batch * params.selection.candidate_multiplier
                vb = params.selection.virtual_batch or batch
                step_f += (2 * n_cand * c.forward + vb * (c.forward + c.backward)) / params.selection.rescore_every
            f += n_seeds * steps * step_f
            runs += n_seeds
        peak = max(peak, weights(c.params, c.params) + (batch + sec.syn_per_batch) * c.activations)
    out.append(StageCost("train", runs, f, peak, f"{n_seeds} seed(s) x variants x benchmarks"))
    return out


def _trained_steps(params: Params) -> list[int]:
    """The denoising steps the RL update trains on (the sampler's schedule, rl.min_sigma_ratio)."""
    from rgsyn.generator.architecture import build_scheduler
    from rgsyn.generator.sampler import PolicySampler
    from rgsyn.rl.dpok import well_conditioned_steps

    sp = params.sampler
    with torch.device("meta"):
        stub = torch.nn.Linear(1, 1)   # the schedule needs no network; the sampler only holds it
    pp = params.prior   # the scheduler the prior stage gives the bundle (rgsyn/generator/prior.py)
    scheduler = (build_scheduler(pp.num_train_timesteps, beta_schedule="linear", clip_sample=False)
                 if pp.pretrained else build_scheduler(pp.num_train_timesteps, prediction_type=pp.prediction_type))
    sampler = PolicySampler(stub, scheduler, None, sp.num_inference_steps, sp.eta, sp.guidance_scale)
    return well_conditioned_steps(sampler.sigmas, params.rl.min_sigma_ratio)


def _epochs(params: Params, domain: str) -> int:
    return params.encoder.epochs or (params.reid.epochs if domain == "persons" else params.face.epochs)


def _batch(params: Params, domain: str) -> int:
    return params.reid.P * params.reid.K if domain == "persons" else params.face.batch_size


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
