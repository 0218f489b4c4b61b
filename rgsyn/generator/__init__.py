"""The DiT generator: prior, cold-start identity adaptation, the policy sampler and synthesis.

- `dit`: build/check/save/load DiT bundles, identity head swap, LoRA helpers.
- `autoencoder`: pixel space (toy) or the SD VAE (paper), one encode/decode interface.
- `sampler`: stochastic DDIM + CFG as a Gaussian policy with per-step log-probs.
- `training`: the denoising-loss loop (accelerate, checkpoints, NaN stop).
- `prior`, `coldstart`, `synthesis`: the `prior`, `coldstart` and `generate` stages.
"""
