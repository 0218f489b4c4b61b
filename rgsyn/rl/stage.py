"""The `rl` stage: DPOK fine-tuning of the cold-started generator with the multi-objective reward.

    rgsyn rl --domain persons|faces --rewards full|no_sem|no_cov|no_exp

One update (PAPER.md step 3):
1. Roll out ``ids_per_step x samples_per_id`` trajectories, grouped by identity, with the stochastic
   DDIM policy (``PolicySampler``, log-probs recorded).
2. Reward the decoded images (``rgsyn.rl.rewards``) on the reward encoder's features; the combined
   reward of the variant's weights, standardised within each identity group, is the advantage of
   every step of a trajectory.
3. Clipped policy-gradient steps (``rgsyn.rl.dpok``) on the LoRA parameters: the batch is split
   into ``minibatches`` random chunks of trajectories, one optimizer step each, repeated for
   ``inner_epochs``. Each step accumulates over a random subset of ``train_timesteps`` recorded
   denoising steps (drawn once per update; 0 = all steps) among the well-conditioned ones: a step
   whose sigma_t is below ``min_sigma_ratio`` x the schedule's mean sigma is never trained on
   (``rgsyn.rl.dpok.well_conditioned_steps``). The subset is a cost choice for the toy profile:
   the gradient stays an unbiased (rescaled) estimate of the sum over the trained steps. Each term adds
   the closed-form KL of the current policy to the reference (LoRA disabled). The first optimizer
   step of an update is on-policy (ratio 1); later ones see ratios != 1, and the clipping acts.

MLflow also gets, per update, the KL and the clip fraction of each trained denoising step
(``kl_step<i>``, ``clip_frac_step<i>``; i indexes the schedule) and, as params, the trained steps
and the sigma of every step.

Curves. The paper's combined reward is standardised over each batch, so its batch mean is ~0 by
construction and cannot show progress. The ``reward`` curve therefore standardises the raw terms
with the statistics of the FIRST rollout (the cold-start policy), frozen for the run: a rising
``reward`` means the policy beats the cold start. ``reward_sem/cov/exp`` are raw batch means
(``reward_exp`` is the group-level R_exp).

Reward-hacking guard: ``gold`` is the identity accuracy of the rollout images under the held-out
gold encoder (nearest gold prototype over all identities), which the policy never optimises. When
over ``hacking_window`` updates the reward rose while gold fell by more than ``hacking_tolerance``
(window means, compared with the window before), the stage warns or stops (``rl.hacking_guard``).

Checkpoints (LoRA, optimizer, step, RNG, curve rows) every ``checkpoint_every`` updates via
``rgsyn.checkpoint.Checkpointer``; a re-run resumes. Every rollout is a function of (seed, step),
so a resumed run reproduces the uninterrupted one.

Several processes (`accelerate launch`): each rank rolls out a contiguous share of the update's
identity groups (``ids_per_step`` must divide by the process count) from its own seed, the reward
features are gathered so that every rank computes the batch-level rewards and advantages of the
whole batch, the LoRA gradients are averaged once per optimizer step, and rank 0 writes. A
checkpoint resumes under any process count (the LoRA and optimizer state are the same on all ranks).
Output: ``paths.rl_dir(domain, rewards)``, an adapter bundle (``lora/`` + ``base.json``: the
cold-start bundle's path and hash; rgsyn/generator/dit.py) and the curve CSV
``paths.rl_curve(domain, rewards)``.
"""
from __future__ import annotations

import csv
import io as _io
import logging
import math
import time

import numpy as np
import torch
from tqdm import tqdm

from rgsyn import distributed, io, paths, tracking
from rgsyn.checkpoint import Checkpointer
from rgsyn.config import Params, to_dict
from rgsyn.errors import CheckpointError, ConfigError, TrainingDiverged
from rgsyn.rl import encoders
from rgsyn.rl.dpok import adapter_disabled, dpok_loss, gaussian_kl, well_conditioned_steps
from rgsyn.rl.rewards import (REWARD_NAMES, IdentityReference, combine_rewards, compute_rewards,
                              group_advantages)

log = logging.getLogger(__name__)

CURVE_COLUMNS = ("step", "reward", "reward_sem", "reward_cov", "reward_exp", "kl", "gold", "clip_frac",
                 "grad_norm", "ratio_mean", "seconds")


class RewardHackingStop(TrainingDiverged):
    """The reward rose while the held-out gold score fell (rl.hacking_guard = stop)."""


def attach_lora(transformer, lora_params, adapter_name: str = "default"):
    """Freeze the transformer and inject a peft LoRA adapter; returns the LoRA parameters."""
    from peft import LoraConfig, inject_adapter_in_model

    transformer.requires_grad_(False)
    config = LoraConfig(r=lora_params.rank, lora_alpha=lora_params.alpha,
                        target_modules=list(lora_params.target_modules), init_lora_weights=True)
    inject_adapter_in_model(config, transformer, adapter_name=adapter_name)
    trainable = [p for n, p in transformer.named_parameters() if "lora_" in n]
    for p in trainable:
        p.requires_grad_(True)
    if not trainable:
        raise ConfigError(f"rl.lora.target_modules: {list(lora_params.target_modules)} match no module "
                          "of the DiT")
    return trainable


def hacking_signal(rewards: list[float], golds: list[float], window: int, tolerance: float) -> bool:
    """True when the mean reward of the last ``window`` updates rose over the window before while
    the mean gold score fell by more than ``tolerance``."""
    if len(rewards) < 2 * window:
        return False
    r_now, r_before = np.mean(rewards[-window:]), np.mean(rewards[-2 * window:-window])
    g_now, g_before = np.mean(golds[-window:]), np.mean(golds[-2 * window:-window])
    return bool(r_now > r_before and g_now < g_before - tolerance)


def gold_accuracy(gold_feats: torch.Tensor, labels: torch.Tensor, gold_protos: torch.Tensor) -> float:
    """Share of images whose nearest gold prototype (cosine) is their own identity."""
    pred = (gold_feats.float() @ gold_protos.float().T).argmax(1)
    return float((pred.cpu() == labels.cpu()).float().mean())


def _curve_text(rows: list[dict]) -> str:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CURVE_COLUMNS), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in CURVE_COLUMNS})
    return buf.getvalue()


def _reference_stats(raw: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    out = {}
    for k in REWARD_NAMES:
        r = raw[k].float()
        out[k] = [float(r.mean()), float(r.std(unbiased=False))]
    return out


def _fixed_combined(raw: dict[str, torch.Tensor], stats: dict[str, list[float]],
                    weights) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The combined reward with each term standardised by the frozen first-rollout statistics."""
    z = {}
    for k in REWARD_NAMES:
        mean, std = stats[k]
        r = raw[k].float()
        z[k] = (r - mean) / std if std > 1e-6 else torch.zeros_like(r)
    return torch.tanh(sum(float(getattr(weights, k)) * z[k] for k in REWARD_NAMES)), z


def _merge_stats(per_rank: list[dict[str, float]]) -> dict[str, float]:
    """One update's DPOK statistics over the ranks: the mean, and the min / max of the ratio extremes."""
    if len(per_rank) == 1:
        return per_rank[0]
    out = {}
    for k in per_rank[0]:
        vals = [d[k] for d in per_rank]
        out[k] = min(vals) if k == "ratio_min" else max(vals) if k == "ratio_max" else float(np.mean(vals))
    return out


def run(params: Params, domain: str, rewards: str) -> dict:
    rl = params.rl
    if domain not in paths.DOMAINS:
        raise ConfigError(f"rl --domain: {domain!r} is not a domain; choose one of {list(paths.DOMAINS)}")
    if rewards not in rl.reward_variants:
        raise ConfigError(f"rl --rewards: {rewards!r} is not a key of rl.reward_variants "
                          f"{sorted(rl.reward_variants)}")
    weights = rl.reward_variants[rewards]
    from rgsyn.generator.dit import load_generator, save_generator
    from rgsyn.generator.sampler import PolicySampler, gaussian_log_prob
    from rgsyn.distributed import make_accelerator
    from rgsyn.precision import Precision

    accelerator = make_accelerator(params.device)
    device = accelerator.device
    prec = Precision(params.compute.precision, device)
    rank, world = accelerator.process_index, accelerator.num_processes
    seed = int(params.generator_seed)
    torch.manual_seed(seed)

    src = paths.coldstart_dir(domain)
    bundle = load_generator(src, device="cpu")
    if not bundle.identities:
        raise CheckpointError(f"{src}: identities.json is missing or empty; the rl stage needs the "
                              "cold-started generator of the domain (run `rgsyn coldstart` first)")
    transformer = bundle.transformer
    transformer.eval()
    lora = attach_lora(transformer, rl.lora)
    bundle.to(device)
    optimizer = torch.optim.Adam(lora, lr=rl.lr)
    sp = params.sampler
    sampler = PolicySampler(transformer, bundle.scheduler, bundle.autoencoder, sp.num_inference_steps,
                            sp.eta, sp.guidance_scale, precision=prec, compile=params.compute.compile,
                            sample_size=bundle.latent_size)
    n_ids = len(bundle.identities)
    k_ids = min(rl.ids_per_step, n_ids)
    eligible = well_conditioned_steps(sampler._sigma, rl.min_sigma_ratio)
    if not eligible:
        raise ConfigError(f"rl.min_sigma_ratio: {rl.min_sigma_ratio} leaves no denoising step to train on")
    if k_ids % world:
        raise ConfigError(f"rl.ids_per_step: {k_ids} identities per update cannot be split evenly over "
                          f"{world} processes (each rank rolls out whole identity groups); use a multiple of {world}")
    k_local = k_ids // world

    # encoders and the real reference of every identity row
    reward_enc = encoders.reward_encoder(params, domain, device)
    gold_enc = encoders.gold_encoder(params, domain, device)
    img_paths = encoders.identity_image_paths(params, domain, bundle.identities)
    ref = IdentityReference.from_features(encoders.real_features(reward_enc, img_paths, rl.ref_images_per_id))
    gold_ref = IdentityReference.from_features(encoders.real_features(gold_enc, img_paths, rl.ref_images_per_id))

    from rgsyn.generator.dit import checkpoint_sha256

    ck = Checkpointer(f"rl-{domain}-{rewards}", {
        "rl": to_dict(params)["rl"], "sampler": to_dict(params)["sampler"], "seed": seed,
        "coldstart": checkpoint_sha256(src)})
    start, rows, ref_stats = 0, [], None
    state = ck.load()
    lora_names = [n for n, p in transformer.named_parameters() if "lora_" in n]
    if state is not None:
        by_name = dict(transformer.named_parameters())
        with torch.no_grad():
            for n in lora_names:
                by_name[n].copy_(state["lora"][n])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        start, rows, ref_stats = int(state["step"]), list(state["rows"]), state["ref_stats"]
        log.info("rl %s/%s: resuming at update %d", domain, rewards, start)

    with tracking.stage_run(params, "rl", run_name=f"rl-{domain}-{rewards}",
                            extra_tags={"rgsyn.domain": domain, "rgsyn.rewards": rewards}) as mlrun:
        tracking.log_params_section(mlrun, params, "rl", "sampler")
        mlrun.log_params({"domain": domain, "rewards": rewards, "n_identities": n_ids,
                          "n_lora_params": sum(p.numel() for p in lora),
                          "trained_steps": ",".join(map(str, eligible)),
                          "sigmas": ",".join(f"{float(x):.4g}" for x in sampler._sigma)})
        t_roll = t_upd = 0.0
        n_traj = 0
        for step in tqdm(range(start, rl.steps), desc=f"rl {domain}/{rewards}", initial=start,
                         total=rl.steps, disable=rank > 0):
            t0 = time.perf_counter()
            # Several processes: every rank draws the same identities, rolls out its own contiguous
            # share of whole identity groups from its own seed, and the rewards (standardised over
            # the batch and within each group) are computed on the gathered features, on every rank.
            rng = np.random.default_rng([seed, step])
            ids = torch.from_numpy(np.sort(rng.choice(n_ids, size=k_ids, replace=False)))
            labels = ids.repeat_interleave(rl.samples_per_id)
            local_ids = ids[rank * k_local:(rank + 1) * k_local]
            lab_local = local_ids.repeat_interleave(rl.samples_per_id)
            mine = slice(rank * lab_local.numel(), (rank + 1) * lab_local.numel())
            roll_seed = distributed.rank_seed(int(rng.integers(2 ** 62)), rank)
            g = torch.Generator(device="cpu").manual_seed(roll_seed)
            traj = sampler.sample(lab_local, g, record=True)
            with torch.no_grad(), prec.autocast():
                f_g = distributed.gather_cat(reward_enc.encode(traj.images).float().cpu())
                raw = compute_rewards(f_g, labels, ref, rl.alpha, rl.eps, rl.tau, rl.rbf_bandwidth)
                combined, _ = combine_rewards(raw, weights)
                gold = gold_accuracy(distributed.gather_cat(gold_enc.encode(traj.images).cpu()), labels,
                                     gold_ref.prototypes)
            for k in (*REWARD_NAMES, "exp_group"):
                if not torch.isfinite(raw[k]).all():
                    raise TrainingDiverged(f"reward R_{k} is not finite at rl step {step} "
                                           f"({domain}/{rewards}); stopping")
            if not torch.isfinite(combined).all():
                raise TrainingDiverged(f"combined reward is not finite at rl step {step}; stopping")
            if ref_stats is None:
                ref_stats = _reference_stats(raw)
            adv = group_advantages(combined, labels)[mine].to(device)
            t1 = time.perf_counter()
            t_roll += t1 - t0
            n_traj += labels.numel()

            # -- policy update, on a random subset of the well-conditioned denoising steps (the
            # ill-conditioned ones, by rl.min_sigma_ratio, are left out: rgsyn.rl.dpok)
            n_train = len(eligible) if rl.train_timesteps <= 0 else min(len(eligible), rl.train_timesteps)
            steps_idx = sorted(eligible[j] for j in rng.choice(len(eligible), size=n_train, replace=False))
            per_step = {i: {"kl": 0.0, "clip_frac": 0.0} for i in steps_idx}
            lab = lab_local.to(device)
            n_mb = max(1, min(rl.minibatches, lab_local.numel()))
            chunks = torch.from_numpy(rng.permutation(lab_local.numel())).chunk(n_mb)
            n_terms = n_train * n_mb * rl.inner_epochs
            agg: dict[str, float] = {}
            norms = []
            for _epoch in range(rl.inner_epochs):
                for idx in chunks:
                    idx_d = idx.to(device)
                    optimizer.zero_grad(set_to_none=True)
                    bad = None
                    for i in steps_idx:
                        x_t = traj.latents[i][idx].to(device)
                        x_prev = traj.latents[i + 1][idx].to(device)
                        with torch.no_grad(), adapter_disabled(transformer):
                            mean_ref, std_ref = sampler.step_mean_std(x_t, i, lab[idx_d])
                        mean, std = sampler.step_mean_std(x_t, i, lab[idx_d])
                        logp = gaussian_log_prob(x_prev, mean, std)
                        kl = gaussian_kl(mean, std, mean_ref, std_ref)
                        loss, st = dpok_loss(logp, traj.log_probs[i][idx].to(device), adv[idx_d],
                                             rl.clip_range, kl, rl.kl_coef)
                        if not torch.isfinite(loss):   # stop on every rank together, below
                            bad = f"DPOK loss is {float(loss)} at rl step {step} (denoising step {i}); stopping"
                            break
                        prec.backward(loss / n_train, accelerator)
                        n_i = n_mb * rl.inner_epochs
                        per_step[i]["kl"] += st["kl"] / n_i
                        per_step[i]["clip_frac"] += st["clip_frac"] / n_i
                        for k, v in st.items():
                            if k == "ratio_min":
                                agg[k] = min(agg.get(k, math.inf), v)
                            elif k == "ratio_max":
                                agg[k] = max(agg.get(k, -math.inf), v)
                            else:
                                agg[k] = agg.get(k, 0.0) + v / n_terms
                    if distributed.any_rank(bad is not None):
                        raise TrainingDiverged(bad or f"DPOK loss is not finite on another process at rl "
                                                      f"step {step}; stopping")
                    # The transformer is called through the sampler (many forward/backward passes per
                    # optimizer step), not through a DDP wrapper: the LoRA gradients are averaged over
                    # the ranks here, once per optimizer step.
                    distributed.mean_gradients(lora)
                    gn = prec.step(optimizer, lora, rl.max_grad_norm, accelerator)
                    if prec.overflowed(gn):
                        continue   # fp16 loss-scale overflow: the scaler skipped this step
                    norms.append(gn)
                    if not math.isfinite(norms[-1]):
                        raise TrainingDiverged(f"gradient norm is {norms[-1]} at rl step {step}; stopping")
            grad_norm = float(np.mean(norms)) if norms else math.nan
            t_upd += time.perf_counter() - t1
            agg = _merge_stats(distributed.gather_objects(agg))
            if distributed.rank_log_enabled():
                distributed.rank_log("rl", {"step": step, "ids": local_ids.tolist(), "rollout_seed": roll_seed,
                                            "lora": distributed.param_digest(lora)})

            fixed, z_fixed = _fixed_combined(raw, ref_stats, weights)
            row = {"step": step, "reward": float(fixed.mean()), "reward_sem": float(raw["sem"].mean()),
                   "reward_cov": float(raw["cov"].mean()), "reward_exp": float(raw["exp_group"].mean()),
                   "kl": agg["kl"], "gold": gold, "clip_frac": agg["clip_frac"], "grad_norm": grad_norm,
                   "ratio_mean": agg["ratio_mean"], "seconds": time.perf_counter() - t0}
            rows.append(row)
            metrics = {**{k: v for k, v in row.items() if k != "step"},
                       "reward_batch": float(combined.mean()), "reward_batch_std": float(combined.std()),
                       "ratio_min": agg["ratio_min"], "ratio_max": agg["ratio_max"], "pg_loss": agg["pg_loss"],
                       "reward_exp_loo": float(raw["exp"].mean())}
            for i, v in per_step.items():   # per denoising step (index into the schedule)
                metrics[f"kl_step{i}"] = v["kl"]
                metrics[f"clip_frac_step{i}"] = v["clip_frac"]
            for k in REWARD_NAMES:
                metrics[f"reward_{k}_std"] = float(z_fixed[k].mean())   # standardised (frozen stats)
                metrics[f"reward_{k}_batch_spread"] = float(raw[k].float().std(unbiased=False))
            mlrun.log_metrics(metrics, step=step)

            if rl.hacking_guard != "off" and hacking_signal([r["reward"] for r in rows],
                                                            [r["gold"] for r in rows],
                                                            rl.hacking_window, rl.hacking_tolerance):
                msg = (f"possible reward hacking at rl step {step} ({domain}/{rewards}): the reward rose "
                       f"over the last {rl.hacking_window} updates while the held-out gold accuracy fell "
                       f"by more than {rl.hacking_tolerance}")
                mlrun.set_tags({"rgsyn.reward_hacking": f"step {step}"})
                if rl.hacking_guard == "stop":
                    raise RewardHackingStop(msg + "; stopping (rl.hacking_guard = stop)")
                log.warning(msg)
                tqdm.write("warning: " + msg)

            done = step + 1
            if done % rl.checkpoint_every == 0 and done < rl.steps:
                ck.save({"lora": {n: p.detach().cpu() for n, p in transformer.named_parameters()
                                  if "lora_" in n},
                         "optimizer": optimizer.state_dict(), "step": done, "rng": torch.get_rng_state(),
                         "rows": rows, "ref_stats": ref_stats})

        bundle.to("cpu")
        if distributed.is_main():   # every rank holds the same LoRA; one writes the outputs
            io.write_text(paths.rl_curve(domain, rewards), _curve_text(rows))
            mlrun.log_artifact(paths.rl_curve(domain, rewards))
            # the adapter and a hash-checked reference to the cold start, not a copy of the DiT
            save_generator(bundle, paths.rl_dir(domain, rewards), base=src)
        n_new = max(1, rl.steps - start)
        third = max(1, len(rows) // 3)
        summary = {
            "reward_first": float(np.mean([r["reward"] for r in rows[:third]])) if rows else 0.0,
            "reward_last": float(np.mean([r["reward"] for r in rows[-third:]])) if rows else 0.0,
            "gold_first": float(np.mean([r["gold"] for r in rows[:third]])) if rows else 0.0,
            "gold_last": float(np.mean([r["gold"] for r in rows[-third:]])) if rows else 0.0,
            "trajectories_per_s": n_traj / t_roll if t_roll > 0 else 0.0,
            "seconds_per_update": t_upd / n_new,
            "seconds_per_rollout": t_roll / n_new,
        }
        mlrun.log_metrics(summary)
    ck.clear()
    distributed.barrier()   # the outputs exist before any rank returns
    return summary
