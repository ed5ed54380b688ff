"""VGG16 loss network with taps relu1_2, relu2_2, relu3_3, relu4_3.

The module's state-dict keys are torchvision's ``vgg16`` ``features.N.*`` keys, so the ImageNet
file (``vgg16-397923af.pth``) loads unchanged; its classifier keys are ignored. Weights come from,
in order: a file the user names, the standard torch hub cache file, or — only when asked with
``--loss-net random`` — a seeded random-feature VGG (random conv weights still carry texture
statistics, He, Wang & Hopcroft 2016), announced on stderr. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch import nn

from styleport.errors import BadInput

# torchvision vgg16 "D" configuration; indices of the ReLUs we tap in ``features``.
CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
TAPS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22}
HUB_FILE = "vgg16-397923af.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_SEED = 0


class VGG16Features(nn.Module):
    """``features`` of torchvision's VGG16 up to relu4_3; forward returns a dict of taps."""

    def __init__(self, taps=tuple(TAPS)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        last = max(TAPS[t] for t in taps)
        for v in CFG:
            if len(layers) > last:
                break
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
                cin = v
        self.features = nn.Sequential(*layers[:last + 1])
        self.taps = {TAPS[t]: t for t in taps}
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.source = "uninitialised"

    def forward(self, x):
        """x: [B,3,H,W] RGB in [0,1]; returns {tap: activation}."""
        h = (x - self.mean) / self.std
        out = {}
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.taps:
                out[self.taps[i]] = h
        return out


def hub_cache_file() -> Path:
    hub = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return Path(hub) / "hub" / "checkpoints" / HUB_FILE


def load_vgg_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a torchvision-style VGG16 state dict (.pth via weights_only=True, or .safetensors)."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"VGG weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise BadInput(f"cannot read VGG weights {path}: {str(e).splitlines()[0][:200]}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BadInput(f"VGG weights {path} hold no state dict")
    return state


def build_vgg(loss_net: str = "auto", weights: str | os.PathLike | None = None, taps=tuple(TAPS),
              announce=True) -> VGG16Features:
    """loss_net: "auto" (file, else hub cache, else a clear error), "imagenet" (same, file required),
    or "random" (seeded random features, announced on stderr)."""
    vgg = VGG16Features(taps)
    if loss_net not in ("auto", "imagenet", "random"):
        raise BadInput(f"unknown loss net {loss_net!r} (imagenet, random)")
    if loss_net == "random":
        if weights:
            raise BadInput("--vgg-weights and --loss-net random exclude each other")
        g = torch.Generator().manual_seed(RANDOM_SEED)
        for m in vgg.features:
            if isinstance(m, nn.Conv2d):
                # Kaiming-normal (fan_out) as torchvision initialises VGG; keeps activations in scale.
                std = (2.0 / (m.out_channels * 9)) ** 0.5
                m.weight.data = torch.randn(m.weight.shape, generator=g) * std
                m.bias.data.zero_()
        vgg.source = f"random-features(seed={RANDOM_SEED})"
        if announce:
            print(f"styleport: using a random-feature VGG16 loss network (seed {RANDOM_SEED}), "
                  "not ImageNet weights", file=sys.stderr)
    else:
        path = Path(weights) if weights else hub_cache_file()
        if not path.is_file():
            if weights:
                raise BadInput(f"VGG weights file not found: {path}")
            raise BadInput(
                f"no ImageNet VGG16 weights: pass --vgg-weights PATH (torchvision's {HUB_FILE}; "
                f"looked in {path}) or --loss-net random for a seeded random-feature loss network")
        state = load_vgg_state(path)
        wanted = vgg.state_dict()
        sub = {k: v for k, v in state.items() if k in wanted}
        missing = [k for k in wanted if k not in sub]
        if missing:
            raise BadInput(f"{path} is not a VGG16 state dict (missing {missing[0]})")
        bad = [k for k in wanted if tuple(sub[k].shape) != tuple(wanted[k].shape)]
        if bad:
            raise BadInput(f"{path}: {bad[0]} has shape {tuple(sub[bad[0]].shape)}, "
                           f"expected {tuple(wanted[bad[0]].shape)}")
        vgg.load_state_dict(sub)
        vgg.source = f"imagenet:{path.name}"
    vgg.eval()
    for p in vgg.parameters():
        p.requires_grad_(False)
    return vgg
