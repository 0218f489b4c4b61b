"""RL fine-tuning of the generator (the `rl` command is `rgsyn.stages.rl`).

- `rewards`: the multi-objective reward (R_sem, R_cov, R_exp, their combination, advantages);
- `encoders`: the reward and gold encoders and the real features of every identity;
- `dpok`: the DPOK objective (clipped policy gradient, closed-form KL, well-conditioned steps);
- `rollout`: an update's draws and its trajectories with log-probs;
- `rollout_rewards`: the rewards, advantages and gold accuracy of one rollout;
- `update`: the DPOK policy update over minibatches;
- `curves`: the curve CSV, the MLflow metrics of an update and the reward-hacking guard;
- `resume`: the stage's checkpoints.
"""
