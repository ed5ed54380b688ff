"""A pytorch/examples-style network (inputs 0..255) with trained-like activation magnitudes.

pytorch/examples ``fast_neural_style`` feeds its TransformerNet raw 0..255 pixels, so a trained
network's first convolution reaches thousands (issue #16 measured 2,791 after conv1 and a
per-channel mean of squares of 1.6e6 inside the first instance norm). No such trained file is
shipped here, so :func:`examples255_state_dict` makes one: the johnson layout with seeded random
weights, non-trivial instance-norm affines, and conv1's weights scaled so that its output on the
project's procedural scene peaks at ``conv1_peak`` (default 2,800, the measured figure), and the last
conv's so that the output spans 0..255 (mean 127.5, std 60 on that scene). The result
is a state dict with pytorch/examples key names (``conv1.conv2d.weight``, ``res1.conv1...``,
``in1.weight``), which ``styleport import --from fast-neural-style`` reads like any other.

What it stands for: the fp16 range problem of 0..255 networks (the first conv and the first norm's
variance), not a good stylisation; later layers are random, so their magnitudes are those of a
freshly initialised network, not of a trained one.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from styleport.models.presets import build, default_config

CONV1_PEAK = 2800.0


def _reference_image(size: int) -> torch.Tensor:
    from styleport.samples import content_scene
    img = np.asarray(content_scene(size, seed=0), dtype=np.float32) / 255.0
    return torch.from_numpy(img.transpose(2, 0, 1)[None].copy())


def examples255_model(width: float = 0.25, seed: int = 0, conv1_peak: float = CONV1_PEAK, size: int = 96):
    """The johnson model (``output="linear255"``) described in the module notes."""
    torch.manual_seed(seed)
    model = build(default_config("johnson", width=width, norm="instance", output="linear255")).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and re.search(r"\.in\d\.weight$", name):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif p.dim() == 1 and re.search(r"\.in\d\.bias$", name):
                p.copy_(0.3 * torch.randn_like(p))
        conv1 = model.net.conv1.conv2d
        x = _reference_image(size) * 255.0
        out = conv1(model.net.conv1.reflection_pad(x))
        gain = conv1_peak / float(out.abs().max())
        conv1.weight.mul_(gain)
        conv1.bias.mul_(gain)
        # the last conv maps to 0..255 like a trained network's (mean 127.5, std 60 on the scene)
        last = model.net.deconv3.conv2d
        y = model(x / 255.0) * 255.0
        g = 60.0 / float(y.std())
        last.weight.mul_(g)
        last.bias.mul_(g)
        y = model(x / 255.0) * 255.0
        last.bias.add_(127.5 - y.mean(dim=(0, 2, 3)))
    return model


def examples255_state_dict(width: float = 0.25, seed: int = 0, conv1_peak: float = CONV1_PEAK) -> dict:
    """The same network as a pytorch/examples ``TransformerNet`` state dict (their key names)."""
    model = examples255_model(width, seed, conv1_peak)
    out = {}
    for k, v in model.state_dict().items():
        k = k[len("net."):]
        m = re.match(r"^res\.(\d+)\.(.*)$", k)
        out[f"res{int(m.group(1)) + 1}.{m.group(2)}" if m else k] = v.clone()
    return out
