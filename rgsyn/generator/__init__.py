"""The DiT generator: its building blocks, the policy sampler and synthesis (the commands that use
them, `prior`, `coldstart` and `generate`, live in `rgsyn.stages`).

- `architecture`: build, load and check the DiT and its DDIM scheduler.
- `identity_head`: the class-label conditioning and the identity head swap of the cold start.
- `lora`: LoRA on the DiT (attach, switch off, merge, adapter folders).
- `bundle`: the generator bundle folder format (save/load, adapter bundles, hash).
- `autoencoder`: pixel space (toy) or the SD VAE (paper), one encode/decode interface.
- `sampler`: stochastic DDIM + CFG as a Gaussian policy with per-step log-probs.
- `training`: the denoising-loss loop (accelerate, checkpoints, NaN stop).
- `datasets`: the image sets the prior and the cold start train on.
- `prior`, `coldstart`: the prior's bundle and the cold start's identity model.
- `synthesis`: sampling a benchmark's identities (per-image seeds, batch resume).
- `oracle`: the toy world as the perfect generator.
- `synthetic_set`: the synthetic folder layout, manifest and publication.
- `generation_metrics`: quality, privacy and identity accuracy of a synthetic set.
"""
