"""Optimisation-based stylisation (Gatys et al. 2016): the slow reference every network imitates.

Pixels start from the content image and are optimised with L-BFGS or Adam against the perceptual
loss; pixels are clamped to [0, 1] after every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from styleport.models.losses import LossConfig, PerceptualLoss


@dataclass
class GatysResult:
    image: torch.Tensor
    losses: list  # total loss at the start of each step, then after the last one


def stylize(content: torch.Tensor, style: torch.Tensor, vgg, cfg: LossConfig | None = None,
            steps: int = 200, optimizer: str = "lbfgs", lr: float | None = None,
            progress: bool = True, init: str = "content") -> GatysResult:
    cfg = cfg or LossConfig(content_layer="relu3_3", beta=1e5, tv_weight=1.0)
    loss_fn = PerceptualLoss(vgg, cfg)
    grams = loss_fn.style_targets(style)
    with torch.no_grad():
        target = vgg(content)[cfg.content_layer]
    if init == "content":
        x = content.clone()
    elif init == "noise":
        x = torch.rand(content.shape, generator=torch.Generator().manual_seed(0))
    else:
        raise ValueError(f"unknown init {init!r}")
    x.requires_grad_(True)

    def evaluate():
        total, terms = loss_fn(x, content, grams, target)
        return total, terms

    losses = []  # loss at the start of each step, then the final loss
    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS([x], lr=lr or 1.0, max_iter=1, history_size=50,
                                line_search_fn="strong_wolfe", tolerance_grad=0.0, tolerance_change=0.0)
    elif optimizer == "adam":
        opt = torch.optim.Adam([x], lr=lr or 0.02)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r} (lbfgs, adam)")
    bar = tqdm(range(steps), desc="gatys", unit="step", disable=None if progress else True,
               leave=False)  # None: bar only on a terminal
    terms = {}
    for _ in bar:
        def closure():
            opt.zero_grad()
            total, t = evaluate()
            total.backward()
            terms.update(t)
            return total

        losses.append(float(opt.step(closure).detach()))
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
        bar.set_postfix(total=f"{losses[-1]:.4g}", style=f"{float(terms['style']):.3g}",
                        content=f"{float(terms['content']):.3g}")
    with torch.no_grad():
        final, _ = evaluate()
    losses.append(float(final))
    return GatysResult(x.detach(), losses)
