"""Knowledge distillation: train a student network to reproduce a teacher checkpoint's outputs.

A tool for making a student of your own (recipe: styleport/assets/MODEL_CARD.md; the embedded
default model is Google's network itself, not a student): the student is a freshly initialised
``magenta-mobile`` network; the teacher is an arbitrary-style checkpoint (e.g. Google's release
imported with ``styleport import --from magenta-tflite``). Two objectives, optimised together:

- predictor: MSE between student and teacher bottlenecks on random style crops;
- transformer: L1 between student and teacher stylisations of random content crops, conditioned on
  teacher bottlenecks of random style crops mixed with the content's own bottleneck at a random
  strength in [0, 1] (so every style strength is covered).

Data: every image of the given folders/files is loaded once (short side ``load_size``) and random
crops with flips are drawn from a seeded generator: the run is deterministic for a seed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from styleport.errors import BadInput
from styleport.images import list_images, load_tensor
from styleport.models.checkpoint import load_checkpoint, save_checkpoint
from styleport.models.presets import build


def _load_set(sources, load_size: int, what: str) -> list[torch.Tensor]:
    files = []
    for s in sources:
        files += list_images(s)
    if not files:
        raise BadInput(f"no {what} images")
    return [load_tensor(f, load_size) for f in files]


def _crops(images, n, size, g):
    out = []
    for _ in range(n):
        img = images[int(torch.randint(len(images), (1,), generator=g))]
        _, _, h, w = img.shape
        scale = float(torch.empty(1).uniform_(1.0, 1.6, generator=g))
        if min(h, w) < size * scale:
            img = F.interpolate(img, scale_factor=size * scale / min(h, w) + 1e-3, mode="bilinear",
                                align_corners=False, antialias=True)
            _, _, h, w = img.shape
        ch = cw = int(size * scale)
        y = int(torch.randint(h - ch + 1, (1,), generator=g))
        x = int(torch.randint(w - cw + 1, (1,), generator=g))
        c = img[:, :, y:y + ch, x:x + cw]
        if ch != size:
            c = F.interpolate(c, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        if bool(torch.rand(1, generator=g) < 0.5):
            c = c.flip(-1)
        out.append(c)
    return torch.cat(out)


class _SameConvBN(torch.nn.Module):
    """Training-time stand-in for a folded-BN conv: conv (no bias) -> BatchNorm -> activation."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv
        self.bn = torch.nn.BatchNorm2d(conv.out_channels)

    def forward(self, x):
        relu6, self.conv.relu6 = self.conv.relu6, False
        try:
            y = self.conv(x)
        finally:
            self.conv.relu6 = relu6
        y = self.bn(y)
        return F.relu6(y) if relu6 else y


def _fold(conv: torch.nn.Conv2d, bn: torch.nn.BatchNorm2d) -> None:
    """Fold eval-mode batch norm into the conv's weight and bias (what Google's graphs hold)."""
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.bias.copy_((bias - bn.running_mean) * scale + bn.bias)


def add_batch_norm(model) -> list:
    """magenta-mobile keeps batch norm folded into conv biases; a from-scratch student trains far
    better with real batch norm. Insert BN after every predictor conv and the transformer's three
    contract convs; :func:`fold_batch_norm` folds them back. Returns the undo list."""
    from styleport.models.magenta import SameConv
    undo = []
    for name, m in list(model.predictor.named_modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, SameConv):
                wrapped = _SameConvBN(child)
                setattr(m, child_name, wrapped)
                undo.append(("pred", m, child_name, wrapped))
    net = model.transformer.net
    for i in (1, 2, 3):
        if getattr(net, f"in{i}") is None:
            bn = torch.nn.BatchNorm2d(getattr(net, f"conv{i}").conv2d.out_channels)
            setattr(net, f"in{i}", bn)
            undo.append(("trans", net, i, bn))
    return undo


def fold_batch_norm(undo: list) -> None:
    for kind, parent, key, mod in undo:
        mod.eval()
        if kind == "pred":
            _fold(mod.conv, mod.bn)
            setattr(parent, key, mod.conv)
        else:
            _fold(getattr(parent, f"conv{key}").conv2d, mod)
            setattr(parent, f"in{key}", None)


def distill(student_config: dict, teacher_ckpt, content, style, out, steps: int = 1000, batch_size: int = 8,
            image_size: int = 128, style_size: int = 128, lr: float = 2e-3, seed: int = 0,
            log_json=None, progress: bool = True) -> dict:
    teacher, tdoc = load_checkpoint(teacher_ckpt)
    if getattr(teacher, "kind", "") != "arbitrary":
        raise BadInput("a distillation teacher must be an arbitrary-style checkpoint (ghiasi, magenta-mobile)")
    torch.manual_seed(seed)
    student = build(student_config)
    if getattr(student, "kind", "") != "arbitrary":
        raise BadInput("distillation trains arbitrary-style students (magenta-mobile, ghiasi)")
    undo = add_batch_norm(student) if student_config.get("preset") == "magenta-mobile" else []
    student.train()
    for p in teacher.parameters():
        p.requires_grad_(False)
    contents = _load_set(content, max(image_size * 2, 256), "content")
    styles = _load_set(style, max(style_size * 2, 256), "style")
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 0.05)
    log = open(log_json, "w") if log_json else None
    bar = tqdm(range(1, steps + 1), desc="distill", unit="step", disable=None if progress else True)
    t0 = time.perf_counter()
    last = {}
    for step in bar:
        c = _crops(contents, batch_size, image_size, g)
        s = _crops(styles, batch_size, style_size, g)
        strength = torch.rand(batch_size, 1, 1, 1, generator=g).clamp(0.3, 1.0)
        strength = torch.where(torch.rand(batch_size, 1, 1, 1, generator=g) < 0.5, torch.ones_like(strength),
                               strength)
        with torch.no_grad():
            tb_style = teacher.predictor(s)
            c_small = F.interpolate(c, size=(style_size, style_size), mode="bilinear", align_corners=False,
                                    antialias=True)
            tb_content = teacher.predictor(c_small)
            tb = strength * tb_style + (1 - strength) * tb_content
            target = teacher.transformer(c, tb)
        half = max(1, batch_size // 2)
        sb = student.predictor(torch.cat([s[:half], c_small[:half]]))
        tb_pred = torch.cat([tb_style[:half], tb_content[:half]])
        loss_pred = F.mse_loss(sb, tb_pred)
        out_img = student.transformer(c, tb)
        loss_img = F.l1_loss(out_img, target)
        loss = loss_img + 0.1 * loss_pred
        if not torch.isfinite(loss):
            raise BadInput(f"distillation diverged at step {step} (loss {float(loss)}); lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        last = {"step": step, "total": loss.item(), "image_l1": loss_img.item(), "bottleneck_mse": loss_pred.item()}
        bar.set_postfix(l1=f"{last['image_l1']:.4f}", bmse=f"{last['bottleneck_mse']:.4f}",
                        ips=f"{step * batch_size / (time.perf_counter() - t0):.1f}")
        if log and (step % 10 == 0 or step == steps):
            log.write(json.dumps(last) + "\n")
            log.flush()
    if log:
        log.close()
    student.eval()
    fold_batch_norm(undo)
    info = {"distilled_from": {"checkpoint": Path(teacher_ckpt).name, "preset": tdoc["model"]["preset"]},
            "train": {"steps": steps, "batch_size": batch_size, "image_size": image_size, "style_size": style_size,
                      "lr": lr, "seed": seed, "seconds": round(time.perf_counter() - t0, 1), "final": last}}
    save_checkpoint(student, student_config, out, extra=info)
    return info
