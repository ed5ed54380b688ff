"""``magenta-mobile``: the network of Google's Magenta mobile release, layer for layer.

Read off the released TFLite graphs (../shared/data/magenta):
- Predictor: MobileNetV2 (depth 1.0) with batch norm folded into conv biases, TF 'SAME' padding
  (stride 2 pads 0 before / 1 after), ReLU6, linear projections, residual adds, Conv_1 to 1280,
  spatial mean, 1x1 conv 1280 -> 100. Input RGB [0,1] at 256², no rescaling inside the graph.
- Transformer: the Ghiasi body at width 0.25 (8/16/32 channels). Every conv is reflect pad (k//2) +
  VALID conv. The three contract convs carry a bias (folded batch norm) and ReLU; the 10 residual
  and 3 expand convs have no bias and are followed by conditional instance norm (eps 1e-5), whose
  gamma and beta are 1x1 convs (with bias) of the bottleneck. Nearest x2 upsampling before the first
  two expand convs; sigmoid output. 13 CIN layers, 2 x 347 = 694 gamma/beta values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from styleport.models.arbitrary import BOTTLENECK, ArbitraryStyleNet, StyleTransfer
from styleport.models.transformer import TransformerNet, scaled

# MobileNetV2 inverted residual settings: (expansion t, channels c, repeats n, first stride s)
MBV2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def tf_same_pad(x, k: int, s: int):
    """TensorFlow 'SAME' padding: total max((ceil(n/s)-1)*s + k - n, 0), the odd pixel at bottom/right."""
    h, w = x.shape[-2:]
    if torch.jit.is_tracing():  # bake the sizes: the predictor is exported at one fixed size
        h, w = int(h), int(w)
    ph = max((-(-h // s) - 1) * s + k - h, 0)
    pw = max((-(-w // s) - 1) * s + k - w, 0)
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class SameConv(nn.Conv2d):
    """Conv2d (with bias: batch norm folded) using TF 'SAME' padding and an optional ReLU6."""

    def __init__(self, cin, cout, k=1, stride=1, groups=1, relu6=False):
        super().__init__(cin, cout, k, stride, 0, groups=groups, bias=True)
        self.relu6 = relu6

    def forward(self, x):
        k, s = self.kernel_size[0], self.stride[0]
        if k == 1 and s == 1:
            x = super().forward(x)
        elif s == 1:  # symmetric: let the conv pad (one op in every exported graph)
            x = F.conv2d(x, self.weight, self.bias, 1, k // 2, 1, self.groups)
        else:
            x = super().forward(tf_same_pad(x, k, s))
        return F.relu6(x) if self.relu6 else x


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.expand = SameConv(cin, hidden, 1, relu6=True) if expand != 1 else None
        self.depthwise = SameConv(hidden, hidden, 3, stride, groups=hidden, relu6=True)
        self.project = SameConv(hidden, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class MobileNetPredictor(nn.Module):
    """style [B,3,h,w] in [0,1] -> bottleneck [B,100,1,1]."""

    def __init__(self, width: float = 1.0, bottleneck: int = BOTTLENECK):
        super().__init__()

        def s(c):
            return scaled(c, width)

        self.conv = SameConv(3, s(32), 3, 2, relu6=True)
        blocks, cin = [], s(32)
        for t, c, n, stride in MBV2:
            for i in range(n):
                blocks.append(InvertedResidual(cin, s(c), stride if i == 0 else 1, t))
                cin = s(c)
        self.blocks = nn.ModuleList(blocks)
        self.conv_1 = SameConv(cin, s(1280), 1, relu6=True)
        self.bottleneck = nn.Conv2d(s(1280), bottleneck, 1)

    def forward(self, x):
        x = self.conv(x)
        for b in self.blocks:
            x = b(x)
        return self.bottleneck(self.conv_1(x).mean(dim=(2, 3), keepdim=True))


def magenta_mobile(width: float = 1.0) -> ArbitraryStyleNet:
    net = TransformerNet(0.25 * width, "none", "cin", "cin", "cin", "sigmoid", bias_before_norm=False)
    return ArbitraryStyleNet(MobileNetPredictor(width), StyleTransfer(net), style_size=256)
