"""On-Policy Adversarial Flow Distillation (AFD) for autoregressive video generation: a notebook-first research kit

Modules:

- `afd_nb.train`: One training loop for AFD (Algorithm 1 of METHOD.md) and for the paper's baselines (off-policy SFT here; GAN and score-free DMD in `afd_nb.baselines`), built on accelerate: on-policy rollouts of `θ_old`, Bradley–Terry discriminator steps (E4), weights (E6)–(E7), the DiffusionNFT update with the prior (E8)–(E11), the old-policy EMA; metrics, plots, evaluation, atomic checkpoints and exact resume."""

__version__ = "0.0.1"
