"""Third-party weights -> styleport models.

fast-neural-style (pytorch/examples ``fast_neural_style``)
    A ``TransformerNet`` state dict saved with ``torch.save`` (zip format, or the legacy pre-1.6
    format), read with ``weights_only=True`` (never arbitrary unpickling). Keys map 1:1 onto the
    ``johnson`` preset (``resN.*`` -> ``net.res.{N-1}.*``, the rest -> ``net.*``); the width is
    inferred from the tensor shapes; ``inN.running_mean/var`` (saved by old torch versions for
    InstanceNorm) are dropped, as pytorch/examples' ``stylize`` does. That network maps 0..255 to
    0..255, so the preset is configured with ``output="linear255"``.

magenta-tflite (Google's arbitrary-image-stylization release)
    ``style_predict_*.tflite`` (MobileNetV2 predictor) and ``style_transfer_*.tflite`` (transformer at
    width 0.25, int8 or f16) -> the ``magenta-mobile`` preset: every weight tensor maps onto one
    parameter (2,334,916 + 177,718 values). :func:`read_tflite_tensors` reads and dequantizes
    constant tensors (f16 cast to f32; int8/int32 ``(q - zero_point) * scale``, per channel on the
    quantized dimension); TFLite conv weights are OHWI (-> OIHW), depthwise 1HWC (-> C1HW), the
    gamma/beta 1x1 convs (C,1,1,100) -> Linear (C,100). In the transfer graph ``StyleNorm/Conv_1``
    is gamma and ``StyleNorm/Conv`` is beta; the residual/expand convs carry all-zero placeholder
    biases that our bias-free convs do not need.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch

from styleport.errors import BadInput
from styleport.models.checkpoint import save_checkpoint, sha256_file
from styleport.models.presets import build, count_params, default_config

# ------------------------------------------------------------------------------------------------
# pytorch/examples fast_neural_style

_RUNNING = re.compile(r"(^|\.)in\d+\.(running_mean|running_var|num_batches_tracked)$")
_RES = re.compile(r"^res(\d+)\.(.*)$")


def read_torch_state_dict(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"state dict not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any decoder failure: a bad or unsafe file for the user
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
        if "Weights only load failed" in text:
            why = "it is not a torch file or holds objects other than tensors, refused by weights_only=True"
        else:
            why = text.splitlines()[0][:200] if text else type(e).__name__
        raise BadInput(f"cannot read {path} as a torch state dict ({why})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise BadInput(f"{path} does not hold a state dict of tensors")
    return state


def fast_neural_style_to_johnson(state: dict, source: str = "state dict") -> tuple[torch.nn.Module, dict]:
    """Map a pytorch/examples TransformerNet state dict onto a ``johnson`` model; returns (model, config)."""
    sd = {}
    for k, v in state.items():
        k = k[len("module."):] if k.startswith("module.") else k
        if _RUNNING.search(k):
            continue
        m = _RES.match(k)
        sd[f"net.res.{int(m.group(1)) - 1}.{m.group(2)}" if m else f"net.{k}"] = v
    w1 = sd.get("net.conv1.conv2d.weight")
    if w1 is None or w1.dim() != 4 or tuple(w1.shape[1:]) != (3, 9, 9):
        raise BadInput(f"{source} is not a fast_neural_style TransformerNet (no conv1.conv2d.weight [C,3,9,9])")
    width = w1.shape[0] / 32.0
    config = default_config("johnson", width=width, norm="instance", output="linear255")
    model = build(config)
    want = model.state_dict()
    missing = sorted(set(want) - set(sd))
    unexpected = sorted(set(sd) - set(want))
    if missing or unexpected:
        what = f"missing {_orig(missing[0])}" if missing else f"unexpected key {_orig(unexpected[0])}"
        raise BadInput(f"{source} does not fit the fast_neural_style layout ({what})")
    for k, v in sd.items():
        if tuple(v.shape) != tuple(want[k].shape):
            raise BadInput(f"{source}: {_orig(k)} has shape {tuple(v.shape)}, expected {tuple(want[k].shape)} "
                           f"for width {width:g} (inferred from conv1: {w1.shape[0]} channels)")
        if not torch.isfinite(v.float()).all():
            raise BadInput(f"{source}: {_orig(k)} holds NaN or Inf")
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    return model.eval(), config


def _orig(key: str) -> str:
    """Our key -> the pytorch/examples key, for messages."""
    k = key[len("net."):] if key.startswith("net.") else key
    m = re.match(r"^res\.(\d+)\.(.*)$", k)
    return f"res{int(m.group(1)) + 1}.{m.group(2)}" if m else k


def import_fast_neural_style_to(path, out) -> tuple[Path, str]:
    state = read_torch_state_dict(path)
    model, config = fast_neural_style_to_johnson(state, str(path))
    info = {"imported_from": {"format": "fast-neural-style", "file": Path(path).name,
                              "sha256": sha256_file(path)}}
    written = save_checkpoint(model, config, out, extra=info)
    return written, f"johnson width {config['width']:g}, {count_params(model):,} parameters, output linear255"


# ------------------------------------------------------------------------------------------------
# TFLite

def read_tflite_tensors(path: str | os.PathLike, names=None) -> dict[str, np.ndarray]:
    """Constant tensors of a .tflite file as float32 arrays, dequantized. ``names``: which (default:
    every float16/quantized/float32 constant that has data). Uses ai_edge_litert without the default
    XNNPACK delegate, which would otherwise take constant tensors away."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"TFLite file not found: {path}")
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as e:  # pragma: no cover - a pinned dependency
        raise BadInput(f"reading TFLite files needs ai-edge-litert ({e})") from None
    try:
        it = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
        details = {d["name"]: d for d in it.get_tensor_details()}
    except Exception as e:  # noqa: BLE001 - the interpreter raises ValueError/RuntimeError for bad files
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise BadInput(f"not a readable TFLite file: {path} ({first})") from None
    wanted = list(details) if names is None else list(names)
    out = {}
    for n in wanted:
        d = details.get(n)
        if d is None:
            raise KeyError(n)
        try:
            a = it.get_tensor(d["index"])
        except ValueError:
            if names is None:
                continue
            raise
        q = d.get("quantization_parameters") or {}
        scales = np.asarray(q.get("scales", []), dtype=np.float64)
        if a.dtype in (np.int8, np.uint8, np.int16, np.int32) and scales.size:
            zps = np.asarray(q.get("zero_points", np.zeros_like(scales)), dtype=np.float64)
            shape = [1] * a.ndim
            if scales.size > 1:
                shape[q["quantized_dimension"]] = -1
            a = (a.astype(np.float64) - zps.reshape(shape)) * scales.reshape(shape)
        elif names is None and a.dtype not in (np.float16, np.float32):
            continue
        out[n] = np.asarray(a, dtype=np.float32)
    return out


def magenta_tf_names(model) -> dict[str, str]:
    """Our ``magenta-mobile`` state-dict key -> TFLite tensor name (predictor file or transfer file)."""
    names = {}
    pred = model.predictor
    for mod, tf in (("conv", "MobilenetV2/Conv"), ("conv_1", "MobilenetV2/Conv_1"),
                    ("bottleneck", "mobilenet_conv/Conv")):
        names[f"predictor.{mod}.weight"] = f"{tf}/weights"
        names[f"predictor.{mod}.bias"] = f"{tf}/Conv2D_bias"
    for i, blk in enumerate(pred.blocks):
        p = "MobilenetV2/expanded_conv" + (f"_{i}" if i else "")
        if blk.expand is not None:
            names[f"predictor.blocks.{i}.expand.weight"] = f"{p}/expand/weights"
            names[f"predictor.blocks.{i}.expand.bias"] = f"{p}/expand/Conv2D_bias"
        names[f"predictor.blocks.{i}.depthwise.weight"] = f"{p}/depthwise/depthwise_weights"
        names[f"predictor.blocks.{i}.depthwise.bias"] = f"{p}/depthwise/depthwise_bias"
        names[f"predictor.blocks.{i}.project.weight"] = f"{p}/project/weights"
        names[f"predictor.blocks.{i}.project.bias"] = f"{p}/project/Conv2D_bias"
    net = model.transformer.net
    for i in (1, 2, 3):
        names[f"transformer.net.conv{i}.conv2d.weight"] = f"transformer/contract/conv{i}/weights"
        names[f"transformer.net.conv{i}.conv2d.bias"] = f"transformer/contract/conv{i}/Conv2D_bias"
    for i in range(len(net.res)):
        for j in (1, 2):
            names[f"transformer.net.res.{i}.conv{j}.conv2d.weight"] = f"transformer/residual/residual{i + 1}/conv{j}/weights"
    for k in (1, 2, 3):
        names[f"transformer.net.deconv{k}.conv2d.weight"] = f"transformer/expand/conv{k}/conv/weights"
    expand = {"in4": "expand/conv1/conv", "in5": "expand/conv2/conv", "in6": "expand/conv3/conv"}
    for idx, (layer, _) in enumerate(net.cin_layers()):
        m = re.match(r"^res\.(\d+)\.in(\d)$", layer)
        tf = f"residual/residual{int(m.group(1)) + 1}/conv{m.group(2)}" if m else expand[layer]
        for ours, sub in (("gamma", "Conv_1"), ("beta", "Conv")):
            base = f"style_params/transformer/{tf}/StyleNorm/{sub}"
            names[f"transformer.head.{ours}.{idx}.weight"] = f"{base}/weights"
            names[f"transformer.head.{ours}.{idx}.bias"] = f"{base}/Conv2D_bias"
    return names


def _to_torch_layout(a: np.ndarray, tf_name: str, shape: tuple) -> np.ndarray:
    if a.ndim == 4 and len(shape) == 4:
        a = a.transpose(3, 0, 1, 2) if "depthwise" in tf_name else a.transpose(0, 3, 1, 2)  # 1HWC / OHWI
    elif a.ndim == 4 and len(shape) == 2:
        a = a.reshape(a.shape[0], -1)  # 1x1 conv (C,1,1,100) -> Linear (C,100)
    return a


def magenta_from_tflite(predictor_path, transfer_path) -> tuple[torch.nn.Module, dict]:
    config = default_config("magenta-mobile")
    model = build(config)
    names = magenta_tf_names(model)
    want = model.state_dict()
    if set(names) != set(want):  # the mapping covers the module exactly
        raise RuntimeError(f"magenta mapping out of date: {sorted(set(want) ^ set(names))[:3]}")
    sd = {}
    for path, prefix, role in ((predictor_path, "predictor.", "style predictor"),
                               (transfer_path, "transformer.", "style transfer")):
        keys = [k for k in names if k.startswith(prefix)]
        try:
            tensors = read_tflite_tensors(path, [names[k] for k in keys])
        except KeyError as e:
            raise BadInput(f"{path} is not Google's Magenta {role} file (no tensor {e.args[0]})") from None
        for k in keys:
            a = _to_torch_layout(tensors[names[k]], names[k], tuple(want[k].shape))
            if tuple(a.shape) != tuple(want[k].shape):
                raise BadInput(f"{path}: {names[k]} has shape {a.shape}, expected {tuple(want[k].shape)}")
            if not np.isfinite(a).all():
                raise BadInput(f"{path}: {names[k]} holds NaN or Inf")
            sd[k] = torch.from_numpy(np.ascontiguousarray(a))
    model.load_state_dict(sd, strict=True)
    return model.eval(), config


def import_magenta_tflite_to(predictor_path, transfer_path, out) -> tuple[Path, str]:
    model, config = magenta_from_tflite(predictor_path, transfer_path)
    info = {"imported_from": {"format": "magenta-tflite",
                              "predictor": {"file": Path(predictor_path).name,
                                            "sha256": sha256_file(predictor_path)},
                              "transfer": {"file": Path(transfer_path).name,
                                           "sha256": sha256_file(transfer_path)}}}
    written = save_checkpoint(model, config, out, extra=info)
    return written, (f"magenta-mobile, predictor {count_params(model.predictor):,} + transformer "
                     f"{count_params(model.transformer):,} parameters")
