"""Arbitrary style transfer (Ghiasi et al. 2017): a style prediction network maps any painting to a
100-d bottleneck; per-layer 1x1 maps turn it into the (gamma, beta) of every conditional instance
norm in the transformer. Style strength mixes the style bottleneck with the content image's own
bottleneck, as Magenta does.

The predictor for the ``ghiasi`` preset is Inception-v3 up to Mixed_6e (key names as torchvision's
``inception_v3`` so an ImageNet file loads), followed by a spatial mean and a 1x1 conv to 100.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from styleport.models.transformer import TransformerNet, scaled

BOTTLENECK = 100


class StyleParamHead(nn.Module):
    """Bottleneck [B,100,1,1] -> flat params [B,P]: one 1x1 map to gamma and one to beta per CIN layer."""

    def __init__(self, channels: list[int], bottleneck: int = BOTTLENECK):
        super().__init__()
        self.gamma = nn.ModuleList(nn.Linear(bottleneck, c) for c in channels)
        self.beta = nn.ModuleList(nn.Linear(bottleneck, c) for c in channels)

    def forward(self, bottleneck):
        # One matmul for all layers (exporters fold the concatenated weights into one constant).
        weight = torch.cat([w for g, b in zip(self.gamma, self.beta) for w in (g.weight, b.weight)], 0)
        bias = torch.cat([w for g, b in zip(self.gamma, self.beta) for w in (g.bias, b.bias)], 0)
        return F.linear(bottleneck.flatten(1), weight, bias)


class StyleTransfer(nn.Module):
    """Transformer with its parameter head: (content [B,3,H,W], bottleneck [B,100,1,1]) -> image."""

    def __init__(self, net: TransformerNet, bottleneck: int = BOTTLENECK):
        super().__init__()
        self.net = net
        self.head = StyleParamHead([m.channels for _, m in net.cin_layers()], bottleneck)

    def forward(self, content, bottleneck):
        return self.net(content, self.head(bottleneck))


class ArbitraryStyleNet(nn.Module):
    """predictor: style [B,3,h,w] in [0,1] -> bottleneck [B,100,1,1]; transformer: (content, bottleneck)."""

    kind = "arbitrary"

    def __init__(self, predictor: nn.Module, transformer: StyleTransfer, style_size: int = 256):
        super().__init__()
        self.predictor = predictor
        self.transformer = transformer
        self.style_size = style_size

    def bottleneck(self, style, content=None, strength: float = 1.0):
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must lie in [0, 1], got {strength}")
        b = self.predictor(style)
        if strength < 1.0:
            if content is None:
                raise ValueError("strength < 1 needs the content image")
            c = F.interpolate(content, size=(self.style_size, self.style_size), mode="bilinear",
                              align_corners=False, antialias=True)
            b = strength * b + (1.0 - strength) * self.predictor(c)
        return b

    def forward(self, content, style, strength: float = 1.0):
        return self.transformer(content, self.bottleneck(style, content, strength))


# --- Inception-v3 up to Mixed_6e (torchvision layout) -------------------------------------------

class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class InceptionA(nn.Module):
    def __init__(self, cin, pool, s):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, s(64), kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, s(48), kernel_size=1)
        self.branch5x5_2 = BasicConv2d(s(48), s(64), kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, s(64), kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(s(64), s(96), kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(s(96), s(96), kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool, kernel_size=1)
        self.out_channels = s(64) + s(64) + s(96) + pool

    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, 3, 1, 1))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    def __init__(self, cin, s):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, s(384), kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, s(64), kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(s(64), s(96), kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(s(96), s(96), kernel_size=3, stride=2)
        self.out_channels = s(384) + s(96) + cin

    def forward(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b3, bd, F.max_pool2d(x, 3, 2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin, c7, s):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, s(192), kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, s(192), kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, s(192), kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, s(192), kernel_size=1)
        self.out_channels = 4 * s(192)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for i in range(1, 6):
            bd = getattr(self, f"branch7x7dbl_{i}")(bd)
        bp = self.branch_pool(F.avg_pool2d(x, 3, 1, 1))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionPredictor(nn.Module):
    """Inception-v3 to Mixed_6e -> spatial mean -> 1x1 conv to the 100-d style bottleneck."""

    def __init__(self, width: float = 1.0, bottleneck: int = BOTTLENECK):
        super().__init__()

        def s(c):
            return scaled(c, width)

        self.Conv2d_1a_3x3 = BasicConv2d(3, s(32), kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(s(32), s(32), kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(s(32), s(64), kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(s(64), s(80), kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(s(80), s(192), kernel_size=3)
        self.Mixed_5b = InceptionA(s(192), s(32), s)
        self.Mixed_5c = InceptionA(self.Mixed_5b.out_channels, s(64), s)
        self.Mixed_5d = InceptionA(self.Mixed_5c.out_channels, s(64), s)
        self.Mixed_6a = InceptionB(self.Mixed_5d.out_channels, s)
        c = self.Mixed_6a.out_channels
        self.Mixed_6b = InceptionC(c, s(128), s)
        self.Mixed_6c = InceptionC(c, s(160), s)
        self.Mixed_6d = InceptionC(c, s(160), s)
        self.Mixed_6e = InceptionC(c, s(192), s)
        self.bottleneck = nn.Conv2d(self.Mixed_6e.out_channels, bottleneck, 1)

    def forward(self, x):
        x = x * 2.0 - 1.0  # Inception's [-1, 1] input range
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, 2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, 2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e"):
            x = getattr(self, name)(x)
        return self.bottleneck(x.mean(dim=(2, 3), keepdim=True))


def ghiasi(width: float = 1.0, contract_norm: str = "batch") -> ArbitraryStyleNet:
    net = TransformerNet(width, contract_norm, "cin", "cin", "cin", "sigmoid", bias_before_norm=False)
    return ArbitraryStyleNet(InceptionPredictor(width), StyleTransfer(net), style_size=256)
