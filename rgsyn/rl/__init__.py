"""RL fine-tuning of the generator: the multi-objective reward (`rewards`), its feature encoders
(`encoders`), the DPOK objective (`dpok`) and the `rl` stage (`stage`)."""
