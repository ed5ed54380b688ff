"""The image transformation network of Johnson et al. (2016) and its conditional variants.

One body serves every preset; the norm of each stage is a parameter:

    c9s1-32, d64, d128        -> contract  (conv1..conv3, in1..in3)
    5 residual blocks at 128  -> res1..res5 (conv1, in1, conv2, in2 each)
    u64, u32                  -> deconv1, deconv2 (nearest upsample x2 + conv, in4, in5)
    c9s1-3                    -> deconv3 (+ in6 when the last conv is normalised, as in Ghiasi)

Names follow pytorch/examples fast_neural_style so its checkpoints map key for key.
Conditional layers (norm "cin") take their gamma/beta from one flat ``params`` tensor [B, P],
laid out layer by layer as [gamma(C), beta(C)] in the order of :meth:`cin_layers`.
"""

from __future__ import annotations

import torch
from torch import nn

from styleport.models.layers import CondInstanceNorm, ConvLayer, make_norm

OUTPUTS = ("sigmoid", "tanh", "linear255")


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, norm: str, bias: bool = True):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3, 1, bias=bias)
        self.in1 = make_norm(norm, channels)
        self.conv2 = ConvLayer(channels, channels, 3, 1, bias=bias)
        self.in2 = make_norm(norm, channels)
        self.relu = nn.ReLU()


class TransformerNet(nn.Module):
    def __init__(self, width: float = 1.0, contract_norm: str = "instance", res_norm: str = "instance",
                 expand_norm: str = "instance", final_norm: str = "none", output: str = "sigmoid",
                 num_res: int = 5, bias_before_norm: bool = True):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output {output!r} not in {OUTPUTS}")
        self.output = output
        c32, c64, c128 = (scaled(c, width) for c in (32, 64, 128))

        def bias(norm):  # a conv followed by a norm needs no bias (Magenta/slim), pytorch/examples keeps it
            return norm == "none" or bias_before_norm

        self.conv1 = ConvLayer(3, c32, 9, 1, bias=bias(contract_norm))
        self.in1 = make_norm(contract_norm, c32)
        self.conv2 = ConvLayer(c32, c64, 3, 2, bias=bias(contract_norm))
        self.in2 = make_norm(contract_norm, c64)
        self.conv3 = ConvLayer(c64, c128, 3, 2, bias=bias(contract_norm))
        self.in3 = make_norm(contract_norm, c128)
        self.res = nn.ModuleList(ResidualBlock(c128, res_norm, bias(res_norm)) for _ in range(num_res))
        self.deconv1 = ConvLayer(c128, c64, 3, 1, upsample=2, bias=bias(expand_norm))
        self.in4 = make_norm(expand_norm, c64)
        self.deconv2 = ConvLayer(c64, c32, 3, 1, upsample=2, bias=bias(expand_norm))
        self.in5 = make_norm(expand_norm, c32)
        self.deconv3 = ConvLayer(c32, 3, 9, 1, bias=bias(final_norm))
        self.in6 = make_norm(final_norm, 3)
        self.relu = nn.ReLU()
        self._cin = [(n, m) for n, m in self.named_modules() if isinstance(m, CondInstanceNorm)]
        self.num_style_params = 2 * sum(m.channels for _, m in self._cin)
        self.channels_last_output = False  # export switch: return NHWC (see forward)

    def cin_layers(self) -> list[tuple[str, CondInstanceNorm]]:
        return list(self._cin)

    def forward(self, x: torch.Tensor, params: torch.Tensor | None = None) -> torch.Tensor:
        if self._cin and params is None:
            raise ValueError("this network has conditional norms: pass style params")
        offset = 0

        def norm(layer, h):
            nonlocal offset
            if layer is None:
                return h
            if isinstance(layer, CondInstanceNorm):
                c = layer.channels
                gamma = params[:, offset:offset + c]
                beta = params[:, offset + c:offset + 2 * c]
                offset += 2 * c
                return layer(h, gamma, beta)
            return layer(h)

        if self.output == "linear255":
            x = x * 255.0
        h = self.relu(norm(self.in1, self.conv1(x)))
        h = self.relu(norm(self.in2, self.conv2(h)))
        h = self.relu(norm(self.in3, self.conv3(h)))
        for block in self.res:
            r = block.relu(norm(block.in1, block.conv1(h)))
            h = h + norm(block.in2, block.conv2(r))
        h = self.relu(norm(self.in4, self.deconv1(h)))
        h = self.relu(norm(self.in5, self.deconv2(h)))
        if self.channels_last_output:
            # TFLite export: finish in NHWC so the layout pass needs no TRANSPOSE around the
            # 3-channel conditional norm (litert-torch 0.10 otherwise wraps it in two); the last
            # conv may compute several output columns per step there (ConvLayer.forward_nhwc).
            h = self.deconv3.forward_nhwc(h)
            if isinstance(self.in6, CondInstanceNorm):
                c = self.in6.channels
                gamma = params[:, offset:offset + c][:, None, None, :]
                beta = params[:, offset + c:offset + 2 * c][:, None, None, :]
                mean = h.mean(dim=(1, 2), keepdim=True)
                d = h - mean
                var = d.square().mean(dim=(1, 2), keepdim=True)
                h = d * (torch.rsqrt(var + self.in6.eps) * gamma) + beta
            elif self.in6 is not None:
                raise ValueError("channels-last output supports a conditional final norm or none")
        else:
            h = norm(self.in6, self.deconv3(h))
        if self.output == "sigmoid":
            return torch.sigmoid(h)
        if self.output == "tanh":
            return (torch.tanh(h) + 1.0) * 0.5
        return h / 255.0


class JohnsonNet(nn.Module):
    """One network per style (Johnson et al. 2016): content [B,3,H,W] in [0,1] -> stylised."""

    kind = "single"

    def __init__(self, width: float = 1.0, norm: str = "instance", output: str = "sigmoid"):
        super().__init__()
        if norm not in ("instance", "batch"):
            raise ValueError(f"johnson norm must be instance or batch, not {norm!r}")
        self.net = TransformerNet(width, norm, norm, norm, "none", output)

    def forward(self, content):
        return self.net(content)


class DumoulinNet(nn.Module):
    """N styles in one network (Dumoulin et al. 2017): every norm is conditional, with a table row
    (gamma, beta) per style. ``style_weights`` [B, N] picks a row (one-hot) or blends rows (convex mix).
    """

    kind = "multi"

    def __init__(self, num_styles: int, width: float = 1.0, output: str = "sigmoid"):
        super().__init__()
        if num_styles < 1:
            raise ValueError("dumoulin needs at least one style")
        self.num_styles = num_styles
        self.net = TransformerNet(width, "cin", "cin", "cin", "none", output)
        table = torch.zeros(num_styles, self.net.num_style_params)
        offset = 0
        for _, m in self.net.cin_layers():
            table[:, offset:offset + m.channels] = 1.0  # gamma = 1, beta = 0
            offset += 2 * m.channels
        self.style_table = nn.Parameter(table)

    def forward(self, content, style_weights):
        return self.net(content, style_weights.to(self.style_table.dtype) @ self.style_table)
