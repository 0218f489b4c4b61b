"""`rgsyn rl --domain persons|faces --rewards full|no_sem|no_cov|no_exp`: DPOK fine-tuning of the
cold-started generator with the multi-objective reward (PAPER.md step 3).

One update, each part a library function:
1. ``rgsyn.rl.rollout``: the update's draws from (seed, step), then ``ids_per_step x samples_per_id``
   trajectories, grouped by identity, with the stochastic DDIM policy (log-probs recorded);
2. ``rgsyn.rl.rollout_rewards``: the rewards of the decoded images on the reward encoder's features,
   the combined reward of the variant's weights standardised within each identity group (the
   advantage of every step of a trajectory), and the held-out gold accuracy;
3. ``rgsyn.rl.update``: clipped policy-gradient steps with the KL to the reference on the LoRA
   parameters, over random minibatches of trajectories, for ``inner_epochs``;
4. ``rgsyn.rl.curves``: the curve row, the MLflow metrics and the reward-hacking guard.
Checkpoints every ``checkpoint_every`` updates (``rgsyn.rl.resume``); a re-run resumes.

MLflow gets the trained denoising steps and the sigma of every step as params.

Several processes (`accelerate launch`): each rank rolls out a contiguous share of the update's
identity groups (``ids_per_step`` must divide by the process count), every rank computes the rewards
of the whole batch from the gathered features, the LoRA gradients are averaged once per optimizer
step, and rank 0 writes. A checkpoint resumes under any process count.

Output: ``paths.rl_dir(domain, rewards)``, an adapter bundle (``lora/`` + ``base.json``: the
cold-start bundle's path and hash; ``rgsyn.generator.bundle``) and the curve CSV
``paths.rl_curve(domain, rewards)``.
"""
from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import torch
from tqdm import tqdm

from rgsyn import distributed, io, paths, tracking
from rgsyn.config import Params
from rgsyn.errors import CheckpointError, ConfigError
from rgsyn.rl import encoders
from rgsyn.rl.curves import (RewardHackingStop, curve_text, hacking_signal, merge_stats, reference_stats,
                             run_summary, update_record)
from rgsyn.rl.dpok import well_conditioned_steps
from rgsyn.rl.resume import restore_state, rl_checkpointer, save_state
from rgsyn.rl.rewards import IdentityReference
from rgsyn.rl.rollout import check_plan, plan_step, roll_out
from rgsyn.rl.rollout_rewards import reward_rollout
from rgsyn.rl.update import policy_update

log = logging.getLogger(__name__)


def load_policy(params: Params, domain: str) -> SimpleNamespace:
    """The cold-start bundle with a fresh LoRA, its optimizer and the sampler, on this rank's device."""
    from rgsyn.generator.bundle import load_generator
    from rgsyn.generator.lora import attach_lora
    from rgsyn.generator.sampler import PolicySampler
    from rgsyn.distributed import make_accelerator
    from rgsyn.precision import Precision

    rl, sp = params.rl, params.sampler
    accelerator = make_accelerator(params.device)
    prec = Precision(params.compute.precision, accelerator.device)
    torch.manual_seed(int(params.generator_seed))   # peft draws the initial LoRA A matrices from it
    src = paths.coldstart_dir(domain)
    bundle = load_generator(src, device="cpu")
    if not bundle.identities:
        raise CheckpointError(f"{src}: identities.json is missing or empty; the rl stage needs the "
                              "cold-started generator of the domain (run `rgsyn coldstart` first)")
    bundle.transformer.eval()
    lora = attach_lora(bundle.transformer, rl.lora)
    bundle.to(accelerator.device)
    optimizer = torch.optim.Adam(lora, lr=rl.lr)
    sampler = PolicySampler(bundle.transformer, bundle.scheduler, bundle.autoencoder, sp.num_inference_steps,
                            sp.eta, sp.guidance_scale, precision=prec, compile=params.compute.compile,
                            sample_size=bundle.latent_size)
    return SimpleNamespace(accelerator=accelerator, prec=prec, src=src, bundle=bundle, lora=lora,
                           optimizer=optimizer, sampler=sampler, n_ids=len(bundle.identities),
                           eligible=well_conditioned_steps(sampler.sigmas, rl.min_sigma_ratio))


def load_references(params: Params, domain: str, identities: list[dict], device) -> SimpleNamespace:
    """The reward and gold encoders and the real reference of every identity row under each."""
    reward_enc = encoders.reward_encoder(params, domain, device)
    gold_enc = encoders.gold_encoder(params, domain, device)
    img_paths = encoders.identity_image_paths(params, domain, identities)
    n = params.rl.ref_images_per_id
    return SimpleNamespace(
        reward_enc=reward_enc, gold_enc=gold_enc,
        ref=IdentityReference.from_features(encoders.real_features(reward_enc, img_paths, n)),
        gold_ref=IdentityReference.from_features(encoders.real_features(gold_enc, img_paths, n)))


def one_update(params: Params, pol, refs, step: int, weights, where: str):
    """One update: plan, rollout, rewards, policy update. Returns (plan, rewards, merged stats,
    update stats, rollout seconds, update seconds)."""
    rl, acc = params.rl, pol.accelerator
    rank, world = acc.process_index, acc.num_processes
    t0 = time.perf_counter()
    plan = plan_step(int(params.generator_seed), step, pol.n_ids, min(rl.ids_per_step, pol.n_ids), rl.samples_per_id,
                     pol.eligible, rl.train_timesteps, rl.minibatches, rank, world)
    traj = roll_out(pol.sampler, plan)
    rewards = reward_rollout(traj.images, plan.labels, plan.mine, refs.reward_enc, refs.gold_enc, refs.ref,
                             refs.gold_ref, rl, weights, pol.prec, acc.device, where)
    t1 = time.perf_counter()
    upd = policy_update(pol.sampler, pol.optimizer, pol.lora, traj, rewards.advantages,
                        plan.local_labels.to(acc.device), plan.trained_steps, plan.chunks, rl, pol.prec, acc, where)
    t2 = time.perf_counter()
    if distributed.rank_log_enabled():
        distributed.rank_log("rl", {"step": step, "ids": plan.local_ids.tolist(), "rollout_seed": plan.rollout_seed,
                                    "lora": distributed.param_digest(pol.lora)})
    return plan, rewards, merge_stats(distributed.gather_objects(upd.stats)), upd, t1 - t0, t2 - t1


def _guard(rl, rows: list[dict], step: int, where: str, mlrun) -> None:
    """Warn, or stop (rl.hacking_guard), when the reward rose while the gold accuracy fell."""
    if rl.hacking_guard == "off" or not hacking_signal([r["reward"] for r in rows], [r["gold"] for r in rows],
                                                       rl.hacking_window, rl.hacking_tolerance):
        return
    msg = (f"possible reward hacking at {where}: the reward rose over the last {rl.hacking_window} updates "
           f"while the held-out gold accuracy fell by more than {rl.hacking_tolerance}")
    mlrun.set_tags({"rgsyn.reward_hacking": f"step {step}"})
    if rl.hacking_guard == "stop":
        raise RewardHackingStop(msg + "; stopping (rl.hacking_guard = stop)")
    log.warning(msg)
    tqdm.write("warning: " + msg)


def _check_args(params: Params, domain: str, rewards: str) -> None:
    if domain not in paths.DOMAINS:
        raise ConfigError(f"rl --domain: {domain!r} is not a domain; choose one of {list(paths.DOMAINS)}")
    if rewards not in params.rl.reward_variants:
        raise ConfigError(f"rl --rewards: {rewards!r} is not a key of rl.reward_variants "
                          f"{sorted(params.rl.reward_variants)}")


def run(params: Params, domain: str, rewards: str) -> dict:
    _check_args(params, domain, rewards)
    rl, weights = params.rl, params.rl.reward_variants[rewards]
    pol = load_policy(params, domain)
    check_plan(pol.eligible, rl.min_sigma_ratio, min(rl.ids_per_step, pol.n_ids), pol.accelerator.num_processes)
    refs = load_references(params, domain, pol.bundle.identities, pol.accelerator.device)
    ck = rl_checkpointer(params, domain, rewards, pol.src)
    start, rows, ref_stats = 0, [], None
    state = ck.load()
    if state is not None:
        start, rows, ref_stats = restore_state(state, pol.bundle.transformer, pol.optimizer)
        log.info("rl %s/%s: resuming at update %d", domain, rewards, start)
    with tracking.stage_run(params, "rl", run_name=f"rl-{domain}-{rewards}",
                            extra_tags={"rgsyn.domain": domain, "rgsyn.rewards": rewards}) as mlrun:
        tracking.log_params_section(mlrun, params, "rl", "sampler")
        mlrun.log_params({"domain": domain, "rewards": rewards, "n_identities": pol.n_ids,
                          "n_lora_params": sum(p.numel() for p in pol.lora),
                          "trained_steps": ",".join(map(str, pol.eligible)),
                          "sigmas": ",".join(f"{float(x):.4g}" for x in pol.sampler.sigmas)})
        t_roll = t_upd = 0.0
        n_traj = 0
        for step in tqdm(range(start, rl.steps), desc=f"rl {domain}/{rewards}", initial=start,
                         total=rl.steps, disable=pol.accelerator.process_index > 0):
            t0, where = time.perf_counter(), f"rl step {step} ({domain}/{rewards})"
            plan, rew, stats, upd, dt_roll, dt_upd = one_update(params, pol, refs, step, weights, where)
            t_roll, t_upd, n_traj = t_roll + dt_roll, t_upd + dt_upd, n_traj + plan.labels.numel()
            ref_stats = ref_stats if ref_stats is not None else reference_stats(rew.raw)
            row, metrics = update_record(step, rew, stats, upd.per_step, upd.grad_norm, ref_stats, weights,
                                         time.perf_counter() - t0)
            rows.append(row)
            mlrun.log_metrics(metrics, step=step)
            _guard(rl, rows, step, where, mlrun)
            if (step + 1) % rl.checkpoint_every == 0 and step + 1 < rl.steps:
                save_state(ck, pol.bundle.transformer, pol.optimizer, step + 1, rows, ref_stats)
        summary = _finish(pol, domain, rewards, rows, mlrun, run_summary(rows, n_traj, t_roll, t_upd,
                                                                         max(1, rl.steps - start)))
    ck.clear()
    distributed.barrier()   # the outputs exist before any rank returns
    return summary


def _finish(pol, domain: str, rewards: str, rows: list[dict], mlrun, summary: dict) -> dict:
    """Rank 0 writes the curve and the adapter bundle (a hash-checked reference to the cold start,
    not a copy of the DiT); the summary goes to MLflow."""
    from rgsyn.generator.bundle import save_generator

    pol.bundle.to("cpu")
    if distributed.is_main():   # every rank holds the same LoRA; one writes the outputs
        io.write_text(paths.rl_curve(domain, rewards), curve_text(rows))
        mlrun.log_artifact(paths.rl_curve(domain, rewards))
        save_generator(pol.bundle, paths.rl_dir(domain, rewards), base=pol.src)
    mlrun.log_metrics(summary)
    return summary
