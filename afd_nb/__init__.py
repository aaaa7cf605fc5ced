"""On-Policy Adversarial Flow Distillation (AFD) for autoregressive video generation: a notebook-first research kit

Modules:

- `afd_nb.train`: Algorithm 1 of METHOD.md, one iteration at a time, and the loop that runs it: on-policy rollouts of `θ_old`, Bradley–Terry discriminator steps (E4), weights (E6)–(E7), the DiffusionNFT update with the prior (E8)–(E11), the old-policy EMA. The paper's baselines (SFT here; GAN and score-free DMD in `afd_nb.baselines`) run in the same loop on the same teacher clips, each with its own iteration."""

__version__ = "0.0.1"
