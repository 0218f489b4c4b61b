"""Sampling throughput of the generator: GPU (DiT-XL/2-256 + SD VAE) and CPU (toy profile).

GPU part (needs CUDA; exits with a message otherwise). DiT-XL/2-256 and an SD-VAE-shaped
AutoencoderKL with random weights, 50 DDIM steps, classifier-free guidance (scale 4), VAE decode,
in batches. Side by side in one run:

  1. diffusers `DiTPipeline` in fp16 (the reference; its own CFG and DDIM scheduler);
  2. rgsyn `PolicySampler` in bf16 (eta = 1, the RL policy, log-probs off), eager;
  3. the same with `torch.compile(mode="max-autotune")` on the transformer (CUDA graphs come with
     max-autotune) and SDPA flash attention (diffusers' default processor on PyTorch 2).

Reported: images/s, achieved TFLOP/s of the transformer (237 GFLOP per DiT-XL/2 forward per
sample; a CFG image costs 2 x 50 forwards = 23.7 TFLOP) and the fraction of the ~790 TFLOP/s
bf16 dense limit of one H200 (33 images/s).

CPU part: toy-profile sampling images/s and the cost of log-prob recording (record=True vs
False), also available as an opt-in pytest-benchmark in tests/test_generator_sampler.py.

Run:  python benchmarks/bench_sampling.py gpu [--batch 256] [--steps 50]
      python benchmarks/bench_sampling.py cpu [--batch 32] [--repeats 5]
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

GFLOP_PER_FORWARD = 237.0     # DiT-XL/2 at 256 px (32x32x4 latents), per sample
H200_BF16_TFLOPS = 790.0


def _dit_xl(dtype):
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(0)
    # the DiT-XL/2-256 config (learned sigma: 8 output channels)
    return DiTTransformer2DModel(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8,
                                 num_layers=28, sample_size=32, patch_size=2,
                                 num_embeds_ada_norm=1000).to("cuda", dtype).eval()


def _sd_vae(dtype):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        block_out_channels=(128, 256, 512, 512), layers_per_block=2, sample_size=256,
                        scaling_factor=0.18215)
    return vae.to("cuda", dtype).eval()


def _timed(fn, n_images: int, repeats: int) -> float:
    fn()                       # warm-up (and compilation)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return n_images * repeats / (time.perf_counter() - t0)


def gpu(batch: int, steps: int, repeats: int, guidance: float = 4.0) -> list[dict]:
    if not torch.cuda.is_available():
        print("bench_sampling gpu: no CUDA device is available; the GPU benchmark needs an NVIDIA GPU "
              "(it was written for one H200). Nothing was measured.")
        sys.exit(0)
    from diffusers import DDIMScheduler, DiTPipeline

    from rgsyn.generator.autoencoder import VaeAutoencoder
    from rgsyn.generator.identity_head import disable_label_dropout
    from rgsyn.generator.sampler import PolicySampler

    torch.backends.cuda.matmul.allow_tf32 = True
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    labels = torch.arange(batch, device="cuda") % 1000
    flop_per_image = 2 * steps * GFLOP_PER_FORWARD * 1e9
    rows = []

    def report(name, ips):
        tflops = ips * flop_per_image / 1e12
        rows.append({"name": name, "images_per_s": ips, "tflops": tflops,
                     "fraction_of_limit": tflops / H200_BF16_TFLOPS})
        print(f"{name:40s} {ips:8.2f} img/s  {tflops:7.1f} TFLOP/s  {tflops / H200_BF16_TFLOPS:6.1%} of limit",
              flush=True)

    # 1. diffusers DiTPipeline, fp16
    pipe = DiTPipeline(transformer=_dit_xl(torch.float16), vae=_sd_vae(torch.float16),
                       scheduler=DDIMScheduler.from_config(scheduler.config)).to("cuda")
    pipe.set_progress_bar_config(disable=True)
    class_labels = labels.tolist()
    report(f"diffusers DiTPipeline fp16 b={batch}", _timed(
        lambda: pipe(class_labels=class_labels, num_inference_steps=steps, guidance_scale=guidance,
                     output_type="np"), batch, repeats))
    del pipe
    torch.cuda.empty_cache()

    # 2./3. PolicySampler, bf16
    transformer = _dit_xl(torch.bfloat16)
    disable_label_dropout(transformer)
    ae = VaeAutoencoder(_sd_vae(torch.bfloat16))
    sampler = PolicySampler(transformer, scheduler, ae, steps, 1.0, guidance)
    g = torch.Generator("cuda").manual_seed(0)
    with torch.inference_mode():
        report(f"rgsyn PolicySampler bf16 eager b={batch}",
               _timed(lambda: sampler.sample(labels, g, record=False), batch, repeats))
        report(f"rgsyn PolicySampler bf16 eager +logp b={batch}",
               _timed(lambda: sampler.sample(labels, g, record=True), batch, repeats))
    sampler.transformer = torch.compile(transformer, mode="max-autotune", fullgraph=False)
    ae.vae.decode = torch.compile(ae.vae.decode, mode="max-autotune")
    with torch.inference_mode():
        report(f"rgsyn PolicySampler bf16 compiled b={batch}",
               _timed(lambda: sampler.sample(labels, g, record=False), batch, repeats))
    return rows


def cpu(batch: int, repeats: int, threads: int | None) -> dict:
    from rgsyn.config import DiTArch, SamplerParams
    from rgsyn.generator.autoencoder import PixelAutoencoder
    from rgsyn.generator.architecture import build_dit, build_scheduler
    from rgsyn.generator.sampler import PolicySampler

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    sp = SamplerParams()
    t = build_dit(DiTArch(num_classes=80)).eval()
    s = PolicySampler(t, build_scheduler(1000), PixelAutoencoder(), sp.num_inference_steps, sp.eta,
                      sp.guidance_scale)
    y = torch.arange(batch) % 80
    out = {}
    cpu_time = {}
    # interleaved, best of `repeats` each; CPU time (process_time) is reported next to wall time
    # because it is far less sensitive to other processes sharing the cores
    for record in (False, True, False, True):
        best, best_cpu = float("inf"), float("inf")
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            s.sample(y, torch.Generator().manual_seed(0), record=record)
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
        key = "record" if record else "plain"
        out[key] = min(out.get(key, float("inf")), best)
        cpu_time[key] = min(cpu_time.get(key, float("inf")), best_cpu)
    res = {"images_per_s_plain": batch / out["plain"], "images_per_s_record": batch / out["record"],
           "logprob_overhead": out["record"] / out["plain"] - 1,
           "logprob_overhead_cpu_time": cpu_time["record"] / cpu_time["plain"] - 1,
           "steps": sp.num_inference_steps, "guidance": sp.guidance_scale, "batch": batch,
           "threads": torch.get_num_threads()}
    print(f"toy CPU sampling ({sp.num_inference_steps} steps, CFG, batch {batch}, "
          f"{torch.get_num_threads()} threads): {res['images_per_s_plain']:.1f} img/s plain, "
          f"{res['images_per_s_record']:.1f} img/s with log-probs "
          f"(overhead {100 * res['logprob_overhead']:+.1f}% wall, "
          f"{100 * res['logprob_overhead_cpu_time']:+.1f}% CPU time)")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=["gpu", "cpu"])
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if a.part == "gpu":
        gpu(a.batch or 256, a.steps, a.repeats)
    else:
        cpu(a.batch or 32, a.repeats, a.threads)
    return 0


def test_bench_cpu_toy_sampling(benchmark):
    """Opt-in pytest-benchmark (`make bench`): the CPU part, batch 32."""
    res = benchmark.pedantic(cpu, args=(32, 2, None), rounds=1, iterations=1)
    assert res["images_per_s_plain"] > 0 and res["logprob_overhead"] < 0.5


if __name__ == "__main__":
    sys.exit(main())
