"""Building blocks shared by the transformer presets.

Two ops have more than one equivalent way to be written, and each exporter wants a different one
(shared/DESIGN.md): reflection padding (``F.pad(mode="reflect")`` -> ONNX Pad / CoreML pad, or
slice+flip+concat, which TFLite runs faster than MIRROR_PAD, or one-pixel slices + concat with no
flip, which ExecuTorch's XNNPACK backend takes whole: it has no reflect pad and no flip) and
instance norm (``F.instance_norm`` -> the native ONNX/CoreML op, or mean/variance, which
litert-torch lowers without transposes and XNNPACK runs without leaving the delegate, or "scaled":
mean/variance with gamma folded into the per-channel scale, two full-size passes fewer), and the
nearest x2 upsample (``F.interpolate`` or "deconv": a stride-2 transposed conv with an identity
2x2 kernel, exact, which XNNPACK runs where it has no nearest resize).
Every module reads its form from a module attribute, set for a whole network with :func:`set_forms`.
The forms compute the same numbers; tests check that.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

PAD_FORMS = ("native", "cat", "slices")
NORM_FORMS = ("native", "meanvar", "scaled")
UPSAMPLE_FORMS = ("native", "deconv")
IN_EPS = 1e-5


def reflect_pad_cat(x: torch.Tensor, p: int) -> torch.Tensor:
    """Reflection padding written as slices, flips and concatenations (same result as F.pad reflect)."""
    if p == 0:
        return x
    left = x[..., :, 1:p + 1].flip(-1)
    right = x[..., :, -p - 1:-1].flip(-1)
    x = torch.cat([left, x, right], dim=-1)
    top = x[..., 1:p + 1, :].flip(-2)
    bottom = x[..., -p - 1:-1, :].flip(-2)
    return torch.cat([top, x, bottom], dim=-2)


def reflect_pad_slices(x: torch.Tensor, p: int) -> torch.Tensor:
    """Reflection padding from one-pixel slices and two concatenations (no flip: a flipped strip
    is its one-pixel slices in reverse order). Same result as F.pad reflect."""
    if p == 0:
        return x
    w = x.shape[-1]
    x = torch.cat([x[..., :, i:i + 1] for i in range(p, 0, -1)] + [x]
                  + [x[..., :, w - 1 - i:w - i] for i in range(1, p + 1)], dim=-1)
    h = x.shape[-2]
    return torch.cat([x[..., i:i + 1, :] for i in range(p, 0, -1)] + [x]
                     + [x[..., h - 1 - i:h - i, :] for i in range(1, p + 1)], dim=-2)


class ReflectPad(nn.Module):
    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad
        self.form = "native"

    def forward(self, x):
        if self.pad == 0:
            return x
        if self.form == "cat":
            return reflect_pad_cat(x, self.pad)
        if self.form == "slices":
            return reflect_pad_slices(x, self.pad)
        return F.pad(x, (self.pad,) * 4, mode="reflect")


def instance_norm(x: torch.Tensor, form: str, eps: float = IN_EPS) -> torch.Tensor:
    """Normalise each sample and channel over H, W (biased variance, as torch and Magenta do)."""
    if form == "meanvar":
        mean = x.mean(dim=(2, 3), keepdim=True)
        var = (x - mean).square().mean(dim=(2, 3), keepdim=True)
        return (x - mean) * torch.rsqrt(var + eps)
    return F.instance_norm(x, eps=eps)


def affine_instance_norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, form: str,
                         eps: float = IN_EPS) -> torch.Tensor:
    """gamma * normalised x + beta (gamma, beta broadcastable to [B,C,1,1]). "scaled" computes
    d = x - mean; d * (gamma * rsqrt(var + eps)) + beta: the same numbers to rounding, with the
    per-channel factors multiplied first instead of two more full-size multiplies."""
    if form == "scaled":
        mean = x.mean(dim=(2, 3), keepdim=True)
        d = x - mean
        var = d.square().mean(dim=(2, 3), keepdim=True)
        return d * (gamma * torch.rsqrt(var + eps)) + beta
    return instance_norm(x, form, eps) * gamma + beta


def upsample_nearest_deconv(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour upsampling as a transposed conv (stride = kernel = factor) whose kernel is
    the identity on channels: every output is one input times 1.0 plus zeros, so exactly equal."""
    c = x.shape[1]
    w = torch.eye(c, dtype=x.dtype, device=x.device).reshape(c, c, 1, 1).expand(c, c, factor, factor)
    return F.conv_transpose2d(x, w.contiguous(), stride=factor)


class InstanceNorm(nn.Module):
    """Instance norm with a learned per-channel affine (key names as torch.nn.InstanceNorm2d)."""

    def __init__(self, channels: int, eps: float = IN_EPS):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps
        self.form = "native"

    def forward(self, x):
        return affine_instance_norm(x, self.weight[:, None, None], self.bias[:, None, None], self.form, self.eps)


class CondInstanceNorm(nn.Module):
    """Conditional instance norm: z = gamma_s * (x - mu) / sigma + beta_s (Dumoulin et al. 2017).

    gamma and beta come per sample from outside ([B, C] each): a style table row (Dumoulin) or the
    style prediction network (Ghiasi). The module holds no parameters of its own.
    """

    def __init__(self, channels: int, eps: float = IN_EPS):
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.form = "native"

    def forward(self, x, gamma, beta):
        return affine_instance_norm(x, gamma[:, :, None, None], beta[:, :, None, None], self.form, self.eps)


def make_norm(kind: str, channels: int) -> nn.Module | None:
    if kind == "instance":
        return InstanceNorm(channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "cin":
        return CondInstanceNorm(channels)
    if kind == "none":
        return None
    raise ValueError(f"unknown norm {kind!r} (instance, batch, cin, none)")


class ConvLayer(nn.Module):
    """Reflection pad + conv (pytorch/examples fast_neural_style key names: conv2d.weight)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, upsample: int = 1, bias: bool = True):
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = ReflectPad(kernel // 2)
        self.conv2d = nn.Conv2d(cin, cout, kernel, stride, bias=bias)
        self.form = "native"  # of the upsample (UPSAMPLE_FORMS)

    def forward(self, x):
        if self.upsample > 1:
            x = (upsample_nearest_deconv(x, self.upsample) if self.form == "deconv"
                 else F.interpolate(x, scale_factor=self.upsample, mode="nearest"))
        return self.conv2d(self.reflection_pad(x))


def set_forms(module: nn.Module, pad: str | None = None, norm: str | None = None,
              upsample: str | None = None) -> nn.Module:
    """Switch every ReflectPad / (Cond)InstanceNorm / upsampling ConvLayer in ``module`` to the given
    forms (in place)."""
    if pad is not None and pad not in PAD_FORMS:
        raise ValueError(f"pad form {pad!r} not in {PAD_FORMS}")
    if norm is not None and norm not in NORM_FORMS:
        raise ValueError(f"norm form {norm!r} not in {NORM_FORMS}")
    if upsample is not None and upsample not in UPSAMPLE_FORMS:
        raise ValueError(f"upsample form {upsample!r} not in {UPSAMPLE_FORMS}")
    for m in module.modules():
        if pad is not None and isinstance(m, ReflectPad):
            m.form = pad
        if norm is not None and isinstance(m, (InstanceNorm, CondInstanceNorm)):
            m.form = norm
        if upsample is not None and isinstance(m, ConvLayer):
            m.form = upsample
    return module


@contextlib.contextmanager
def forms(module: nn.Module, pad: str | None = None, norm: str | None = None, upsample: str | None = None):
    """Temporarily switch forms, restoring the previous ones afterwards."""
    saved = [(m, m.form) for m in module.modules() if hasattr(m, "form")]
    set_forms(module, pad, norm, upsample)
    try:
        yield module
    finally:
        for m, f in saved:
            m.form = f
