"""Building blocks shared by the transformer presets.

Two ops have more than one equivalent way to be written, and each exporter wants a different one
(shared/DESIGN.md): reflection padding (``F.pad(mode="reflect")`` -> ONNX Pad / CoreML pad;
slice+flip+concat, which TFLite runs faster than MIRROR_PAD; or one-wide slices + concat without
flip, the TFLite and ExecuTorch form, whose every op XNNPACK takes: it has no reflect pad and no
flip) and instance norm (``F.instance_norm`` -> the native ONNX/CoreML op, or mean/variance with
gamma folded into the per-channel scale, which litert-torch lowers without transposes and XNNPACK
runs without leaving the delegate). A third form is for XNNPACK's GEMM tiles: a conv with a narrow
output (3 or 8 channels) computes several output columns per step as channels ("phases",
:func:`conv_phases_nhwc`). The nearest x2 upsample is ``F.interpolate`` or "deconv": a stride-2
transposed conv with an identity 2x2 kernel, exact, which ExecuTorch's XNNPACK backend runs where
it has no nearest resize.
Every module reads its form from a module attribute, set for a whole network with :func:`set_forms`.
The forms compute the same numbers; tests check that.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

PAD_FORMS = ("native", "cat", "slices")
NORM_FORMS = ("native", "meanvar")
CONV_FORMS = ("native", "phases")
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
    """Reflection padding from one-wide slices and concatenations, without flip: the TFLite graph
    has no REVERSE_V2, which XNNPACK does not take. XNNPACK's CONCATENATION takes 2-5 inputs and
    the converter merges a concatenation fed by slices of another one along the same axis, so the
    padding grows two pixels a side at a time, alternating width and height: each concatenation
    has at most 5 inputs and slices the previous one along the other axis."""
    h, w = x.shape[-2], x.shape[-1]
    q = 0  # pixels padded so far on each side: y[..., k] == x[..., k - q] inside
    while q < p:
        m = min(2, p - q)
        for dim, n in ((-1, w), (-2, h)):
            left = [x.narrow(dim, 2 * q + i, 1) for i in range(m, 0, -1)]   # x[q + i] sits at y[2q + i]
            right = [x.narrow(dim, n - 1 - i, 1) for i in range(1, m + 1)]  # x[n-1-q-i] sits at y[n-1-i]
            x = torch.cat(left + [x] + right, dim)
        q += m
    return x


def conv_phases_nhwc(x: torch.Tensor, conv: nn.Conv2d, r: int) -> torch.Tensor:
    """``conv`` (stride 1, no padding) of an NCHW ``x``, returned NHWC, with its output columns
    computed ``r`` at a time as channels: one conv of stride (1, r) whose kernel holds the original
    kernel at the ``r`` column offsets, then a reshape (NHWC memory: column ``r*j + p``, channel c
    is channel ``p*C + c`` of column j). Same numbers. For a narrow output (the 3-channel last
    layer) XNNPACK's GEMM tiles are r times fuller: the 9x9 32->3 conv at 384² ran 0.37x as long
    with r = 4 (litert-torch 0.10, LiteRT 2.3; README, Export)."""
    w = conv.weight
    co = w.shape[0]
    wide = torch.cat([F.pad(w, (p, r - 1 - p)) for p in range(r)], 0)
    bias = None if conv.bias is None else torch.cat([conv.bias] * r)  # repeat() stays a BROADCAST_TO
    y = F.conv2d(x, wide, bias, stride=(1, r))
    n, _, h, cols = y.shape
    return y.permute(0, 2, 3, 1).reshape(n, h, cols * r, co)


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
    """instance_norm(x) * gamma + beta, gamma and beta [B or 1, C, 1, 1]. The meanvar form folds
    gamma into the per-channel 1/sigma first: three passes over the image (subtract, multiply,
    add) instead of four, the same numbers up to rounding."""
    if form == "meanvar":
        mean = x.mean(dim=(2, 3), keepdim=True)
        d = x - mean
        var = d.square().mean(dim=(2, 3), keepdim=True)
        return d * (torch.rsqrt(var + eps) * gamma) + beta
    return instance_norm(x, form, eps) * gamma + beta


class InstanceNorm(nn.Module):
    """Instance norm with a learned per-channel affine (key names as torch.nn.InstanceNorm2d)."""

    def __init__(self, channels: int, eps: float = IN_EPS):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps
        self.form = "native"

    def forward(self, x):
        return affine_instance_norm(x, self.weight[None, :, None, None], self.bias[None, :, None, None], self.form, self.eps)


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


def upsample_nearest_deconv(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour upsampling as a transposed conv (stride = kernel = factor) whose kernel is
    the identity on channels: every output is one input times 1.0 plus zeros, so exactly equal."""
    c = x.shape[1]
    w = torch.eye(c, dtype=x.dtype, device=x.device).reshape(c, c, 1, 1).expand(c, c, factor, factor)
    return F.conv_transpose2d(x, w.contiguous(), stride=factor)


class ConvLayer(nn.Module):
    """Reflection pad + conv (pytorch/examples fast_neural_style key names: conv2d.weight)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, upsample: int = 1, bias: bool = True):
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = ReflectPad(kernel // 2)
        self.conv2d = nn.Conv2d(cin, cout, kernel, stride, bias=bias)
        self.form = "native"  # CONV_FORMS (see _phases)
        self.upsample_form = "native"  # UPSAMPLE_FORMS

    def _upsample(self, x):
        if self.upsample == 1:
            return x
        if self.upsample_form == "deconv":
            return upsample_nearest_deconv(x, self.upsample)
        return F.interpolate(x, scale_factor=self.upsample, mode="nearest")

    def _phases(self, width: int) -> int:
        """Output columns per step of the "phases" form: enough to fill 16 GEMM lanes with a narrow
        output (3 -> 4, 8 -> 2), a power of two dividing the width; 1 = the plain conv."""
        if self.form != "phases" or self.conv2d.stride != (1, 1) or self.conv2d.out_channels >= 16:
            return 1
        r = 1
        while r * 2 * self.conv2d.out_channels <= 16 and width % (r * 2) == 0:
            r *= 2
        return r

    def forward(self, x):
        x = self._upsample(x)
        r = self._phases(x.shape[-1])
        if r > 1:
            return conv_phases_nhwc(self.reflection_pad(x), self.conv2d, r).permute(0, 3, 1, 2)
        return self.conv2d(self.reflection_pad(x))

    def forward_nhwc(self, x):
        """Same as ``forward(x).permute(0, 2, 3, 1)``, without the round trip in the "phases" form."""
        x = self._upsample(x)
        r = self._phases(x.shape[-1])
        if r > 1:
            return conv_phases_nhwc(self.reflection_pad(x), self.conv2d, r)
        return self.conv2d(self.reflection_pad(x)).permute(0, 2, 3, 1)


def set_forms(module: nn.Module, pad: str | None = None, norm: str | None = None,
              conv: str | None = None, upsample: str | None = None) -> nn.Module:
    """Switch every ReflectPad / (Cond)InstanceNorm / ConvLayer in ``module`` to the given forms
    (in place); ``upsample`` is the form of the upsampling ConvLayers' nearest resize."""
    if conv is not None and conv not in CONV_FORMS:
        raise ValueError(f"conv form {conv!r} not in {CONV_FORMS}")
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
        if conv is not None and isinstance(m, ConvLayer):
            m.form = conv
        if upsample is not None and isinstance(m, ConvLayer):
            m.upsample_form = upsample
    return module


@contextlib.contextmanager
def forms(module: nn.Module, pad: str | None = None, norm: str | None = None, conv: str | None = None,
          upsample: str | None = None):
    """Temporarily switch forms, restoring the previous ones afterwards."""
    attrs = ("form", "upsample_form")
    saved = [(m, a, getattr(m, a)) for m in module.modules() for a in attrs if hasattr(m, a)]
    set_forms(module, pad, norm, conv, upsample)
    try:
        yield module
    finally:
        for m, a, f in saved:
            setattr(m, a, f)
