"""Stochastic DDIM (eta > 0) with classifier-free guidance, as a Gaussian policy with log-probs.

Each denoising step is a Gaussian policy (PAPER.md step 3; DDIM, Song et al. 2021, eq. 12):

    eps      = eps_u + s * (eps_c - eps_u)                          (CFG, s = guidance_scale; a v- or
                                                                     x0-predicting model is converted)
    x0_hat   = (x_t - sqrt(1 - a_t) * eps) / sqrt(a_t)              (clipped if scheduler.clip_sample;
                                                                     eps is then re-derived from it)
    sigma_t  = eta * sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
    mean     = sqrt(a_prev) * x0_hat + sqrt(1 - a_prev - sigma_t^2) * eps
    x_prev   = mean + sigma_t * z,   z ~ N(0, I)
    log p(x_prev | x_t) = sum_d [ -(x_prev - mean)^2 / (2 sigma_t^2) - log sigma_t - log(2 pi) / 2 ]

with a_t = alphas_cumprod[t]. The previous timestep is the NEXT ENTRY of `scheduler.timesteps`
(a_prev = alphas_cumprod[timesteps[i+1]]; after the last entry, `final_alpha_cumprod`), never
`t - T/N`, which is wrong for "trailing"/"linspace" spacings. Bundles use `set_alpha_to_one=False`
so sigma of the last step is > 0 and its log-prob finite.

API (the RL stage builds DPOK on it):

    sampler = PolicySampler(transformer, scheduler, autoencoder, num_inference_steps, eta, guidance_scale,
                            precision="fp32", compile=False)
    traj = sampler.sample(labels, generator, record=True)      # one call = a batch of trajectories
    mean, std = sampler.step_mean_std(x_t, step_index, labels)  # differentiable, CFG included
    logp = sampler.log_prob(x_t, x_prev, step_index, labels)    # differentiable, (B,) fp32
    sampler.sigmas                                              # (T,) the std of every step

`generator` is one `torch.Generator` for the batch, or a list of B generators (one per sample;
synthesis uses that so an image depends only on its own seed, not on its batch).

Precision (`compute.precision`, rgsyn/precision.py): the transformer and the VAE decode run under
autocast; the network output is cast to fp32 (`.float()`) before CFG, the DDIM mean and the
Gaussian log-prob, so the policy's log-probs are fp32 arithmetic in every mode and a recomputed
log-prob equals the recorded one under bf16 too. `compile=True` runs the transformer through
`torch.compile` (the module itself is kept for parameters, LoRA toggling and saving).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rgsyn import threads
from rgsyn.generator.identity_head import null_label
from rgsyn.precision import Precision, maybe_compile

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass
class Trajectory:
    latents: torch.Tensor | None      # (T+1, B, C, h, w) fp32: x_T .. x_0 (None when record=False)
    timesteps: torch.Tensor           # (T,) the scheduler timesteps, in sampling order
    log_probs: torch.Tensor | None    # (T, B) fp32: log p(x_{i+1} | x_i) under the sampling weights
    labels: torch.LongTensor          # (B,)
    images: torch.Tensor              # (B, 3, H, W) in [0, 1]

    @property
    def num_steps(self) -> int:
        return int(self.timesteps.shape[0])


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Sum over all but the batch dim of log N(x; mean, std^2), computed in fp32."""
    x, mean = x.float(), mean.float()
    std = torch.as_tensor(std, dtype=torch.float32, device=x.device)
    per_dim = -((x - mean) ** 2) / (2 * std ** 2) - torch.log(std) - LOG_SQRT_2PI
    return per_dim.flatten(1).sum(1)


class PolicySampler:
    def __init__(self, transformer, scheduler, autoencoder, num_inference_steps: int = 10,
                 eta: float = 1.0, guidance_scale: float = 2.0, precision: str | Precision = "fp32",
                 compile: bool = False, sample_size: int | None = None):
        from diffusers import DDIMScheduler

        if eta <= 0:
            raise ValueError(f"sampler.eta must be > 0 for a stochastic policy, got {eta}")
        self.transformer = transformer
        self._forward = maybe_compile(transformer, compile)
        self.autoencoder = autoencoder
        self.precision = precision if isinstance(precision, Precision) else Precision(precision, self.device)
        self.sample_size = sample_size   # latent side; None = transformer.config.sample_size
        # own copy (set_timesteps mutates it). The last "leading" timestep is 0 unless
        # steps_offset >= 1, and a step from t=0 to alphas_cumprod[0] has zero variance.
        config = dict(scheduler.config)
        config["set_alpha_to_one"] = False
        if config.get("timestep_spacing", "leading") == "leading" and not config.get("steps_offset"):
            config["steps_offset"] = 1
        self.scheduler = DDIMScheduler.from_config(config)
        self.scheduler.set_timesteps(num_inference_steps)
        self.num_inference_steps = num_inference_steps
        self.eta = float(eta)
        self.guidance_scale = float(guidance_scale)
        self.timesteps = self.scheduler.timesteps.clone().long()  # descending
        ac = self.scheduler.alphas_cumprod.double()
        final = torch.as_tensor(self.scheduler.final_alpha_cumprod, dtype=torch.float64)
        a_t = ac[self.timesteps]
        a_prev = torch.cat([ac[self.timesteps[1:]], final.reshape(1)])
        var = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
        sigma = self.eta * var.clamp_min(0).sqrt()
        if (sigma <= 0).any():
            raise ValueError("a DDIM step has zero variance (set_alpha_to_one=True?); the policy "
                             "log-prob would be infinite. Use a scheduler with set_alpha_to_one=False")
        # per-step coefficients, computed once in float64 and stored in fp32
        self._a_t = a_t.float()
        self._a_prev = a_prev.float()
        self._sigma = sigma.float()
        self._dir_coef = (1 - a_prev - sigma ** 2).clamp_min(0).sqrt().float()
        cfg = self.scheduler.config
        self._clip = float(cfg.clip_sample_range) if cfg.clip_sample else None
        self._prediction = cfg.prediction_type
        if self._prediction not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"unsupported prediction_type {self._prediction!r}")

    # --------------------------------------------------------------------------- one step
    @property
    def sigmas(self) -> torch.Tensor:
        """The policy std sigma_t of every denoising step, (T,) fp32 in sampling order (a copy)."""
        return self._sigma.clone()

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    def _model_output(self, x_t: torch.Tensor, step_index: int, labels: torch.Tensor) -> torch.Tensor:
        """The guided network output (epsilon, v or x0, per `prediction_type`); CFG is linear, so
        guiding any of them equals guiding epsilon."""
        t = self.timesteps[step_index].to(x_t.device)
        channels = x_t.shape[1]
        dtype = next(self.transformer.parameters()).dtype
        if self.guidance_scale != 1.0:
            null = torch.full_like(labels, null_label(self.transformer))
            x_in = torch.cat([x_t, x_t]).to(dtype)
            y_in = torch.cat([labels, null])
        else:
            x_in, y_in = x_t.to(dtype), labels
        with self.precision.autocast():
            out = self._forward(x_in, timestep=t.expand(x_in.shape[0]), class_labels=y_in).sample
        eps = out[:, :channels].float()   # DiT-XL/2 also predicts sigma in the extra channels
        if self.guidance_scale != 1.0:
            eps_c, eps_u = eps.chunk(2)
            eps = eps_u + self.guidance_scale * (eps_c - eps_u)
        return eps

    def step_mean_std(self, x_t: torch.Tensor, step_index: int, labels: torch.Tensor):
        """Mean (B,C,h,w) fp32 and std (0-dim fp32 tensor) of p(x_prev | x_t), differentiable."""
        x_t = x_t.float()
        a_t, a_prev = self._a_t[step_index].item(), self._a_prev[step_index].item()
        out = self._model_output(x_t, step_index, labels)
        if self._prediction == "v_prediction":
            x0 = math.sqrt(a_t) * x_t - math.sqrt(1 - a_t) * out
            eps = math.sqrt(a_t) * out + math.sqrt(1 - a_t) * x_t
        elif self._prediction == "sample":
            x0 = out
            eps = (x_t - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        else:
            eps = out
            x0 = (x_t - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        if self._clip is not None:
            x0 = x0.clamp(-self._clip, self._clip)
            eps = (x_t - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        mean = math.sqrt(a_prev) * x0 + self._dir_coef[step_index].item() * eps
        std = self._sigma[step_index].to(x_t.device)
        return mean, std

    def log_prob(self, x_t: torch.Tensor, x_prev: torch.Tensor, step_index: int,
                 labels: torch.Tensor) -> torch.Tensor:
        """log p(x_prev | x_t) of step `step_index` under the current weights, (B,) fp32."""
        mean, std = self.step_mean_std(x_t, step_index, labels)
        return gaussian_log_prob(x_prev, mean, std)

    # ------------------------------------------------------------------------- trajectories
    def _noise(self, shape, generator) -> torch.Tensor:
        """Standard normal noise of `shape` (B, ...); per-sample generators draw their own rows."""
        if isinstance(generator, (list, tuple)):
            if len(generator) != shape[0]:
                raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
            rows = [torch.randn(shape[1:], generator=g, device=g.device, dtype=torch.float32)
                    for g in generator]
            return torch.stack(rows).to(self.device)
        dev = generator.device if generator is not None else self.device
        return torch.randn(shape, generator=generator, device=dev, dtype=torch.float32).to(self.device)

    def latent_shape(self, batch: int) -> tuple[int, ...]:
        cfg = self.transformer.config
        side = int(self.sample_size or cfg.sample_size)
        return (batch, int(cfg.in_channels), side, side)

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator=None, record: bool = True,
               latents: torch.Tensor | None = None) -> Trajectory:
        """Sample a batch of trajectories; record x_t, x_{t-1}, t and log-probs when `record`."""
        labels = labels.to(self.device).long()
        b = labels.shape[0]
        x = self._noise(self.latent_shape(b), generator) if latents is None else latents.to(self.device).float()
        xs = [x] if record else None
        logps = [] if record else None
        for i in range(len(self.timesteps)):
            threads.rebalance()   # the fair share of the cores (rgsyn.threads)
            mean, std = self.step_mean_std(x, i, labels)
            x = mean + std * self._noise(mean.shape, generator)
            if record:
                xs.append(x)
                logps.append(gaussian_log_prob(x, mean, std))
        images = self.decode(x)
        return Trajectory(
            latents=torch.stack(xs) if record else None,
            timesteps=self.timesteps.clone(),
            log_probs=torch.stack(logps) if record else None,
            labels=labels,
            images=images)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images in [0, 1]."""
        with self.precision.autocast():
            img = self.autoencoder.decode(latents)
        return ((img.float() + 1) / 2).clamp(0, 1)
