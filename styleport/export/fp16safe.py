"""fp16-safe export: scale down each convolution that feeds an instance norm (issue #16).

Instance norm is invariant to a positive scale of its input: IN(s*x) with eps*s^2 equals IN(x).
A phone's fp16 path stores every tensor in fp16 (max 65504), including the steps of the TFLite
export's decomposed norm (MEAN / SUB / MUL(square) / MEAN / RSQRT), so a 0..255 pytorch/examples
network, whose first conv reaches ~2.8e3, overflows in (x - mean)^2. Scaling that conv's weights and
bias by s = 2^-k (exact in binary floating point) and its norm's eps by s^2 computes the same
function in fp32 and keeps fp16 clear of the range.

How s is chosen: the module (as exported: layout and op forms of the format) runs in fp32 on
calibration images (the project's procedural scenes at the export size and the export's own random
sample); for each conv -> norm pair, max |x| and max |x - mean| of the norm's input are measured,
and k is the smallest k >= 0 with s * max|x - mean| <= 2^(8 - MARGIN/2) and s * max|x| <= 65504 / 2^MARGIN
(MARGIN = 4 bits: the largest square stays 16x under 65504, the largest value too). Convs whose
norm input already fits keep s = 1. The input's own scaling (``linear255`` networks multiply the
[0,1] input by 255 before conv1) is measured and reported: 255 is far inside fp16.

eps: eps * s^2 is floored at 2^-24, the smallest fp16 value (a subnormal), so a rescaled eps never
vanishes in fp16 where the original one would not (the default 1e-5 is itself subnormal in fp16).
The floor changes the fp32 function only for channels whose variance is of the order of
2^-24 / s^2 (e.g. 2.4e-4 for s = 1/64, in the original units); tests check fp32 parity.

Applied to the torch module before export, for fp16 artefacts only (bundle.py; ``export
--no-fp16-rescale`` turns it off); the scales go into the artefact's manifest details.
"""

from __future__ import annotations

import math

import numpy as np
import torch

MARGIN_BITS = 4
FP16_MAX = 65504.0
EPS_FLOOR = 2.0 ** -24


def norm_pairs(module: torch.nn.Module) -> list[tuple[str, torch.nn.Conv2d, str, torch.nn.Module]]:
    """(conv name, conv, norm name, norm) for every conv that feeds an instance norm directly."""
    from styleport.models.layers import CondInstanceNorm, InstanceNorm
    from styleport.models.transformer import TransformerNet
    pairs = []
    for tname, net in module.named_modules():
        if not isinstance(net, TransformerNet):
            continue
        cands = [("conv1", "in1"), ("conv2", "in2"), ("conv3", "in3"), ("deconv1", "in4"), ("deconv2", "in5"),
                 ("deconv3", "in6")]
        cands += [(f"res.{i}.conv{j}", f"res.{i}.in{j}") for i in range(len(net.res)) for j in (1, 2)]
        mods = dict(net.named_modules())
        for c, n in cands:
            norm = mods.get(n)
            if isinstance(norm, (InstanceNorm, CondInstanceNorm)) and c in mods:
                pairs.append((c, mods[c].conv2d, n, norm))
    return pairs


def _calibration(sample: tuple, inputs: list) -> list[tuple]:
    """The export sample plus the procedural scenes at its size and layout (content input replaced)."""
    from styleport.samples import content_scene
    feeds = [tuple(sample)]
    spec = inputs[0]
    shape = list(sample[0].shape)
    nhwc = spec.get("layout") == "NHWC"
    h, w = (shape[1], shape[2]) if nhwc else (shape[2], shape[3])
    for seed in range(3):
        img = content_scene(max(h, w), seed=seed).resize((w, h))
        a = np.asarray(img, dtype=np.float32)[None] / 255.0               # NHWC
        t = torch.from_numpy(a if nhwc else a.transpose(0, 3, 1, 2).copy())
        feeds.append((t,) + tuple(sample[1:]))
    return feeds


def measure(module: torch.nn.Module, feeds: list[tuple]) -> dict:
    """norm name -> {max_abs, max_dev} of its input over ``feeds`` (fp32)."""
    pairs = norm_pairs(module)
    stats = {n: {"max_abs": 0.0, "max_dev": 0.0} for _, _, n, _ in pairs}
    hooks = []
    for _, _, n, norm in pairs:
        def pre(mod, args, n=n):
            x = args[0].detach().float()
            dev = (x - x.mean(dim=(2, 3), keepdim=True)).abs().max().item()
            stats[n]["max_abs"] = max(stats[n]["max_abs"], x.abs().max().item())
            stats[n]["max_dev"] = max(stats[n]["max_dev"], dev)
        hooks.append(norm.register_forward_pre_hook(pre))
    outs = []
    try:
        with torch.no_grad():
            for f in feeds:
                outs.append(module(*f))
    finally:
        for h in hooks:
            h.remove()
    stats["_outputs"] = outs
    return stats


def _nhwc_final_norm(module) -> dict:
    """TFLite exports compute the last conditional norm inline in NHWC (transformer.py): the forward
    pre-hook never fires there, so measure deconv3's output instead."""
    from styleport.models.layers import CondInstanceNorm
    from styleport.models.transformer import TransformerNet
    out = {}
    for net in module.modules():
        if isinstance(net, TransformerNet) and net.channels_last_output and isinstance(net.in6, CondInstanceNorm):
            out["in6"] = net.deconv3.conv2d
    return out


def make_fp16_safe(module: torch.nn.Module, sample: tuple, inputs: list, margin_bits: int = MARGIN_BITS) -> dict:
    """Rescale ``module`` in place (see the module notes); returns the manifest details."""
    pairs = norm_pairs(module)
    if not pairs:
        return {"applied": False, "reason": "no convolution feeds an instance norm in this network"}
    feeds = _calibration(sample, inputs)
    final = _nhwc_final_norm(module)
    captured = {}
    hooks = []
    for n, conv in final.items():
        def fwd(mod, args, out, n=n):
            x = out.detach().float()
            dev = (x - x.mean(dim=(2, 3), keepdim=True)).abs().max().item()
            s = captured.setdefault(n, {"max_abs": 0.0, "max_dev": 0.0})
            s["max_abs"] = max(s["max_abs"], x.abs().max().item())
            s["max_dev"] = max(s["max_dev"], dev)
        hooks.append(conv.register_forward_hook(fwd))
    try:
        stats = measure(module, feeds)
    finally:
        for h in hooks:
            h.remove()
    stats.update(captured)
    before = stats.pop("_outputs")
    lim_dev = math.sqrt(FP16_MAX / 2.0 ** margin_bits)
    lim_abs = FP16_MAX / 2.0 ** margin_bits
    layers = []
    with torch.no_grad():
        for cname, conv, nname, norm in pairs:
            st = stats.get(nname, {"max_abs": 0.0, "max_dev": 0.0})
            k = 0
            while k < 30 and (st["max_dev"] * 2.0 ** -k > lim_dev or st["max_abs"] * 2.0 ** -k > lim_abs):
                k += 1
            row = {"conv": cname, "norm": nname, "max_abs": round(st["max_abs"], 4),
                   "max_dev_from_mean": round(st["max_dev"], 4), "scale": 2.0 ** -k, "eps": norm.eps}
            if k:
                s = 2.0 ** -k
                conv.weight.mul_(s)
                if conv.bias is not None:
                    conv.bias.mul_(s)
                norm.eps = max(norm.eps * s * s, EPS_FLOOR)
                row["eps"] = norm.eps
                row["eps_floored"] = norm.eps == EPS_FLOOR
            layers.append(row)
    scaled = [r for r in layers if r["scale"] != 1.0]
    change = 0.0
    if scaled:
        with torch.no_grad():
            change = max(float((module(*f) - b).abs().max()) for f, b in zip(feeds, before))
    return {"applied": bool(scaled), "margin_bits": margin_bits, "fp32_max_abs_change": change,
            "limits": {"max_dev_from_mean": lim_dev, "max_abs": lim_abs},
            "calibration": "export sample + 3 procedural scenes (styleport.samples.content_scene), fp32",
            "input_scale": _input_scale(module),
            "scaled": [f"{r['conv']} x{r['scale']:g}" for r in scaled], "layers": layers}


def _input_scale(module) -> dict | None:
    from styleport.models.transformer import TransformerNet
    for net in module.modules():
        if isinstance(net, TransformerNet) and net.output == "linear255":
            return {"op": "x * 255 before conv1 (linear255)", "max_abs": 255.0,
                    "margin_bits": round(math.log2(FP16_MAX / 255.0), 2)}
    return None
