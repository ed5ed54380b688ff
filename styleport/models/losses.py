"""Perceptual losses of Gatys et al. (2016), as used by Johnson and Ghiasi.

Gram matrix: G = F F^T / (C * H * W) for features F reshaped to [C, H*W] — normalised by the
number of elements of the feature map, so layers of different sizes weigh alike.
Content loss: mean squared difference of features on one higher layer.
Style loss: sum over layers of w_l * mean squared difference of Gram matrices.
Total variation: mean squared difference of neighbouring pixels (down and right).
Perceptual loss: alpha * content + beta * style + tv_weight * TV.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


def gram(features: torch.Tensor) -> torch.Tensor:
    """[B,C,H,W] -> [B,C,C], G_ij = sum_k F_ik F_jk / (C*H*W)."""
    b, c, h, w = features.shape
    f = features.reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def content_loss(feat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(feat, target)


def style_loss(feats: dict, target_grams: dict, weights: dict) -> torch.Tensor:
    """Weighted sum over layers of MSE between Gram matrices (target grams broadcast over batch)."""
    total = 0.0
    for layer, w in weights.items():
        g = gram(feats[layer])
        t = target_grams[layer]
        total = total + w * F.mse_loss(g, t.expand_as(g))
    return total


def total_variation(img: torch.Tensor) -> torch.Tensor:
    dh = img[..., 1:, :] - img[..., :-1, :]
    dw = img[..., :, 1:] - img[..., :, :-1]
    return dh.square().mean() + dw.square().mean()


@dataclass
class LossConfig:
    content_layer: str = "relu2_2"
    style_weights: dict = field(default_factory=lambda: {
        "relu1_2": 1.0, "relu2_2": 1.0, "relu3_3": 1.0, "relu4_3": 1.0})
    alpha: float = 1.0       # content weight
    beta: float = 1e5        # style weight
    tv_weight: float = 0.0

    @property
    def layers(self) -> tuple:
        return tuple(sorted(set(self.style_weights) | {self.content_layer}))


class PerceptualLoss(torch.nn.Module):
    """alpha * content + beta * style + tv * TV on a VGG16 loss network; returns (total, terms)."""

    def __init__(self, vgg, cfg: LossConfig):
        super().__init__()
        self.vgg = vgg
        self.cfg = cfg

    def style_targets(self, style: torch.Tensor) -> dict:
        with torch.no_grad():
            feats = self.vgg(style)
            return {k: gram(feats[k]) for k in self.cfg.style_weights}

    def forward(self, output, content, style_grams: dict, content_feats=None):
        cfg = self.cfg
        feats = self.vgg(output)
        if content_feats is None:
            with torch.no_grad():
                content_feats = self.vgg(content)[cfg.content_layer]
        lc = content_loss(feats[cfg.content_layer], content_feats)
        ls = style_loss(feats, style_grams, cfg.style_weights)
        ltv = total_variation(output) if cfg.tv_weight else output.new_zeros(())
        total = cfg.alpha * lc + cfg.beta * ls + cfg.tv_weight * ltv
        return total, {"content": lc.detach(), "style": ls.detach(), "tv": ltv.detach()}
