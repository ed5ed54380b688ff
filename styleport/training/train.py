"""Feed-forward training for every preset, resumable bit for bit, on one process or under torchrun.

What each preset trains on
- ``johnson``: one style image; every batch is matched against its Gram matrices.
- ``dumoulin``: N style images = N table rows; each (global) batch picks one style, one-hot weights.
- ``ghiasi`` / ``magenta-mobile``: predictor and transformer jointly; every sample gets a random
  style image from the pool (Ghiasi et al. 2017) and is matched against that image's Grams.

Loss defaults (``PRESET_DEFAULTS``) are the papers' / reference code's values; every one is a flag.

Checkpoints (every ``checkpoint_every`` steps and at the end) are ordinary styleport checkpoints
plus ``state.safetensors`` with the Adam moments and step counts, and config.json ``training``
with the step, options, optimizer hyper-parameters and the torch RNG state. The data stream needs
no saved state: the batch of step k is a function of (seed, k) (see :mod:`styleport.training.data`).
Resume therefore continues exactly: k steps + resume + m steps == k + m straight steps.

Distributed: under ``torchrun`` (RANK / WORLD_SIZE set) the process group is initialised (gloo on
CPU, nccl on GPU), each rank takes its slice of the global batch and DistributedDataParallel
averages the gradients, so the ranks hold the weights one process would get on the whole batch
(batch-norm presets excepted: their batch statistics are per rank, as with any DDP). Only rank 0
writes checkpoints, logs and the progress bar; at the end the ranks' weights are compared.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from styleport.errors import BadInput, ThresholdFailed
from styleport.models.checkpoint import load_checkpoint, read_config, save_checkpoint
from styleport.models.losses import LossConfig, PerceptualLoss
from styleport.models.presets import PRESETS, build, default_config
from styleport.training.data import BatchStream, ImageSet, collect, note

LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
STYLE4 = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")

# Per preset: content layer, alpha (content weight), per-layer style weight, beta (style multiplier),
# TV weight, learning rate, batch size.
#  johnson: pytorch/examples fast_neural_style (content relu2_2 1e5, style relu1_2..relu4_3 1e10,
#           Adam 1e-3, batch 4); its Gram is normalised by C*H*W like ours.
#  dumoulin: Magenta image_stylization (content conv3 1, style conv1..conv4 1e-4, Adam 1e-3, batch 16).
#  ghiasi / magenta-mobile: Magenta arbitrary_image_stylization (content conv3 1, style conv1..conv4
#           0.5e-3 each, TV 1e4, Adam 1e-5, batch 8).
# Magenta's Grams are normalised by H*W only and its VGG sees 0..255 pixels, so its weights do not
# carry over 1:1 to this normalisation (ours by C*H*W on ImageNet-normalised input): they are the
# papers' numbers as asked; tune --style-weight for a stronger stylisation.
PRESET_DEFAULTS = {
    "johnson": dict(content_layer="relu2_2", alpha=1e5, style_layer_weight=1.0, beta=1e10, tv=0.0,
                    lr=1e-3, batch_size=4),
    "dumoulin": dict(content_layer="relu3_3", alpha=1.0, style_layer_weight=1e-4, beta=1.0, tv=0.0,
                     lr=1e-3, batch_size=16),
    "ghiasi": dict(content_layer="relu3_3", alpha=1.0, style_layer_weight=0.5e-3, beta=1.0, tv=1e4,
                   lr=1e-5, batch_size=8),
    "magenta-mobile": dict(content_layer="relu3_3", alpha=1.0, style_layer_weight=0.5e-3, beta=1.0, tv=1e4,
                           lr=1e-5, batch_size=8),
}
MIN_STYLE_SIZE = {"ghiasi": 75}  # Inception-v3 to Mixed_6e needs 75 px at least


@dataclass
class TrainOptions:
    preset: str
    content: list
    style: list
    steps: int
    out: str
    width: float | None = None
    image_size: int = 256
    style_size: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    resume: bool = False
    log_json: str | None = None
    log_every: int = 10
    checkpoint_every: int = 1000
    grad_accum: int = 1
    content_layer: str | None = None
    content_weight: float | None = None
    style_layers: list | None = None
    style_layer_weight: float | None = None
    style_weight: float | None = None
    tv_weight: float | None = None
    norm: str | None = None
    progress: bool = True
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# distributed helpers

class Dist:
    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.owned = False
        if torch.cuda.is_available():
            self.device = torch.device("cuda", self.local_rank if self.world > 1 else torch.cuda.current_device())
        else:
            self.device = torch.device("cpu")
        if self.world > 1 and not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group(backend)
            self.owned = True

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_mean(self, values: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return values
        v = values.detach().clone().to(self.device)
        dist.all_reduce(v)
        return v / self.world

    def close(self):
        if self.owned and dist.is_initialized():
            dist.destroy_process_group()


# ------------------------------------------------------------------------------------------------
# optimizer / RNG state <-> checkpoint

def optimizer_to_checkpoint(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Adam state -> (JSON-able hyper-parameters, tensors). Exact: tensors are stored as they are."""
    sd = opt.state_dict()
    tensors, meta = {}, {}
    for pid, st in sd["state"].items():
        keys = []
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{pid}.{k}"] = v.detach().cpu().contiguous().clone()
                keys.append(k)
            else:
                meta.setdefault("scalars", {})[f"{pid}.{k}"] = v
        meta.setdefault("keys", {})[str(pid)] = keys
    meta["param_groups"] = sd["param_groups"]
    meta["type"] = type(opt).__name__
    return meta, tensors


def optimizer_from_checkpoint(opt: torch.optim.Optimizer, meta: dict, tensors: dict) -> None:
    state = {}
    for pid, keys in meta.get("keys", {}).items():
        state[int(pid)] = {k: tensors[f"optim.{pid}.{k}"] for k in keys}
    for key, v in meta.get("scalars", {}).items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _rng_to_b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.numpy().tobytes()).decode("ascii")


def _rng_from_b64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


# ------------------------------------------------------------------------------------------------

def files_digest(files) -> str:
    h = hashlib.sha256()
    for p in files:
        h.update(str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def resolve_loss(o: TrainOptions, saved: dict | None) -> LossConfig:
    """The loss: preset defaults, then the checkpoint's (on resume), then explicit flags."""
    d = PRESET_DEFAULTS[o.preset]
    base = dict(content_layer=d["content_layer"], alpha=d["alpha"], beta=d["beta"], tv_weight=d["tv"],
                style_weights={k: d["style_layer_weight"] for k in STYLE4})
    if saved:
        base.update(saved)
    if o.content_layer is not None:
        base["content_layer"] = o.content_layer
    if o.content_weight is not None:
        base["alpha"] = o.content_weight
    if o.style_weight is not None:
        base["beta"] = o.style_weight
    if o.tv_weight is not None:
        base["tv_weight"] = o.tv_weight
    if o.style_layers is not None or o.style_layer_weight is not None:
        layers = o.style_layers or list(base["style_weights"])
        w = o.style_layer_weight if o.style_layer_weight is not None else d["style_layer_weight"]
        base["style_weights"] = {k: w for k in layers}
    for k in [base["content_layer"], *base["style_weights"]]:
        if k not in LAYERS:
            raise BadInput(f"unknown VGG layer {k!r} (choose from {', '.join(LAYERS)})")
    if not base["style_weights"]:
        raise BadInput("no style layers")
    return LossConfig(**base)


def _check_options(o: TrainOptions) -> None:
    if o.preset not in PRESETS:
        raise BadInput(f"unknown preset {o.preset!r} (choose from {', '.join(PRESETS)})")
    if o.steps < 1:
        raise BadInput("--steps must be >= 1")
    if o.image_size < 16:
        raise BadInput("--image-size must be >= 16")
    if o.style_size is not None and o.style_size < 16:
        raise BadInput("--style-size must be >= 16")
    if o.batch_size is not None and o.batch_size < 1:
        raise BadInput("--batch-size must be >= 1")
    if o.lr is not None and not (0 < o.lr <= 1e30):
        raise BadInput("--lr must be a positive number up to 1e30")
    if o.checkpoint_every < 1 or o.log_every < 1 or o.grad_accum < 1:
        raise BadInput("--checkpoint-every, --log-every and --grad-accum must be >= 1")
    if o.width is not None and not 0.0 < o.width <= 4.0:
        raise BadInput(f"--width must lie in (0, 4], got {o.width}")
    out = Path(o.out)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise BadInput(f"output folder does not exist: {parent}")
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out must name a checkpoint folder, and {out} is a file")
    if o.log_json:
        lp = Path(o.log_json).parent
        if str(lp) and not lp.is_dir():
            raise BadInput(f"folder for --log-json does not exist: {lp}")


def train(o: TrainOptions) -> dict:
    """Run training; returns a summary dict (rank 0's view). Raises BadInput / ThresholdFailed."""
    _check_options(o)
    dd = Dist()
    try:
        return _train(o, dd)
    finally:
        dd.close()


def _train(o: TrainOptions, dd: Dist) -> dict:
    quiet = not dd.main
    out = Path(o.out)

    # ---- resume: read what the checkpoint says before deciding anything else
    saved = None
    if o.resume and out.exists():
        doc = read_config(out)
        saved = doc.get("training")
        if not isinstance(saved, dict) or "step" not in saved:
            raise BadInput(f"{out} is not a training checkpoint (no training state to resume)")
        if not (out / "state.safetensors").is_file():
            raise BadInput(f"{out} has no state.safetensors (optimizer state): cannot resume exactly")
        so = saved["options"]
        for name, mine, theirs in (("--preset", o.preset, so["preset"]), ("--seed", o.seed, so["seed"]),
                                   ("--image-size", o.image_size, so["image_size"])):
            if mine != theirs:
                raise BadInput(f"--resume: {out} was trained with {name} {theirs}, not {mine}")
        for name, mine, key in (("--batch-size", o.batch_size, "batch_size"),
                                ("--style-size", o.style_size, "style_size")):
            if mine is not None and mine != so[key]:
                raise BadInput(f"--resume: {out} was trained with {name} {so[key]}, not {mine}")
        o.batch_size, o.style_size = so["batch_size"], so["style_size"]
        if o.width is not None and float(doc["model"].get("width", 1.0)) != o.width:
            raise BadInput(f"--resume: {out} has width {doc['model'].get('width')}, not {o.width}")
    elif o.resume and not quiet:
        note(f"--resume: {out} does not exist yet; starting at step 0")

    d = PRESET_DEFAULTS[o.preset]
    batch_size = o.batch_size or d["batch_size"]
    if batch_size % (dd.world * o.grad_accum):
        raise BadInput(f"--batch-size {batch_size} is not divisible by {dd.world} process(es) x "
                       f"{o.grad_accum} accumulation step(s)")
    style_size = o.style_size or max(o.image_size, MIN_STYLE_SIZE.get(o.preset, 0))
    if style_size < MIN_STYLE_SIZE.get(o.preset, 0):
        raise BadInput(f"{o.preset}'s Inception predictor needs style images of at least "
                       f"{MIN_STYLE_SIZE[o.preset]} px (--style-size {style_size})")
    lr = o.lr if o.lr is not None else (saved["lr"] if saved else d["lr"])
    loss_cfg = resolve_loss(o, saved.get("loss") if saved else None)

    # ---- data
    content_files = collect(o.content, "content")
    style_files = collect(o.style, "style")
    content = ImageSet(content_files, "content", o.image_size, quiet=quiet)
    if o.preset == "johnson" and len(style_files) != 1:
        raise BadInput(f"johnson trains one style; got {len(style_files)} style images "
                       "(use --preset dumoulin for several, ghiasi/magenta-mobile for arbitrary styles)")
    styles = ImageSet(style_files, "style", style_size, quiet=quiet)

    # ---- model
    if saved:
        model, doc = load_checkpoint(out, eval_mode=False)
        config = doc["model"]
        if o.preset == "dumoulin" and config.get("num_styles") != len(styles):
            raise BadInput(f"--resume: {out} holds {config.get('num_styles')} styles, "
                           f"but {len(styles)} style images were given")
    else:
        config = default_config(o.preset, width=o.width or 1.0,
                                num_styles=len(styles) if o.preset == "dumoulin" else None,
                                norm=o.norm if o.preset == "johnson" else None)
        torch.manual_seed(o.seed)
        model = build(config)
    kind = model.kind
    model.to(dd.device).train()

    mode = {"single": "none", "multi": "per-batch", "arbitrary": "per-sample"}[kind]
    stream = BatchStream(content, o.seed, batch_size, o.image_size, styles, style_size, mode)

    vgg = o.extra.get("vgg")
    if vgg is None:
        from styleport.models.vgg import build_vgg
        vgg = build_vgg("auto", announce=dd.main)
    vgg = vgg.to(dd.device)
    loss_fn = PerceptualLoss(vgg, loss_cfg)

    fixed_grams = None
    if kind == "single":
        fixed_grams = loss_fn.style_targets(styles.whole(0, style_size).to(dd.device))
    elif kind == "multi":
        fixed_grams = [loss_fn.style_targets(styles.whole(i, style_size).to(dd.device))
                       for i in range(len(styles))]

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    start = 0
    if saved:
        from safetensors.torch import load_file
        tensors = load_file(str(out / "state.safetensors"))
        optimizer_from_checkpoint(opt, saved["optimizer"], {k: v.to(dd.device) for k, v in tensors.items()})
        for g in opt.param_groups:
            g["lr"] = lr
        torch.set_rng_state(_rng_from_b64(saved["rng"]["torch"]))
        start = int(saved["step"])
        if saved.get("content_digest") != files_digest(content.files) and not quiet:
            note("--resume: the content image set changed since the checkpoint; the data order differs")
        if saved.get("style_files") != [str(p) for p in styles.files] and not quiet:
            note("--resume: the style images differ from the checkpoint's")

    train_model = model
    if dd.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        train_model = DDP(model, device_ids=[dd.device.index] if dd.device.type == "cuda" else None)

    per_rank = batch_size // dd.world
    accum = o.grad_accum
    micro = per_rank // accum
    lo = dd.rank * per_rank

    options = {"preset": o.preset, "seed": o.seed, "image_size": o.image_size, "style_size": style_size,
               "batch_size": batch_size, "grad_accum": accum, "world_size": dd.world, "steps": o.steps, "checkpoint_every": o.checkpoint_every,
               "content": [str(p) for p in o.content], "style": [str(p) for p in o.style]}
    history = {"first": None, "last": None}
    log_f = open(o.log_json, "a" if saved else "w") if (o.log_json and dd.main) else None  # noqa: SIM115
    last_saved = start if saved else None

    summary_ddp: dict = {}

    def save(step: int, ddp_info: dict | None = None):
        meta, tensors = optimizer_to_checkpoint(opt)
        info = {"step": step, "lr": lr, "loss": asdict(loss_cfg), "options": options,
                "optimizer": meta, "rng": {"torch": _rng_to_b64(torch.get_rng_state())},
                "content_digest": files_digest(content.files), "style_files": [str(p) for p in styles.files],
                "content_images": len(content), "skipped_images": content.skipped + styles.skipped,
                "world_size": dd.world, "loss_net": getattr(vgg, "source", "?"),
                "last_total": history["last"]}
        if ddp_info:
            info["ddp"] = ddp_info
        save_checkpoint(model, config, out, extra={"training": info}, extra_tensors=tensors)

    def forward_loss(b: dict):
        content_t = b["content"].to(dd.device)
        if kind == "single":
            output = train_model(content_t)
            grams = fixed_grams
        elif kind == "multi":
            s = b["style_index"]
            w = torch.zeros(content_t.shape[0], len(styles), device=dd.device)
            w[:, s] = 1.0
            output = train_model(content_t, w)
            grams = fixed_grams[s]
        else:
            style_t = b["style"].to(dd.device)
            output = train_model(content_t, style_t)
            grams = loss_fn.style_targets(style_t)
        return loss_fn(output, content_t, grams)

    from tqdm import tqdm
    bar = tqdm(total=o.steps, initial=start, desc=f"train {o.preset}", unit="step", leave=False,
               disable=(None if o.progress else True) if dd.main else True)
    t0 = time.perf_counter()
    done = 0
    try:
        if start >= o.steps and dd.main:
            note(f"{out} is already at step {start} (--steps {o.steps}); nothing to do")
        for step in range(start, o.steps):
            opt.zero_grad(set_to_none=True)
            parts = torch.zeros(4)
            for c in range(accum):
                sync = c == accum - 1 or dd.world == 1
                ctx = train_model.no_sync() if not sync else contextlib.nullcontext()
                with ctx:
                    b = stream.batch(step, lo + c * micro, lo + (c + 1) * micro)
                    total, terms = forward_loss(b)
                    total.backward()
                cfg = loss_cfg
                parts += torch.stack([total.detach(), cfg.alpha * terms["content"], cfg.beta * terms["style"],
                                      cfg.tv_weight * terms["tv"]]).float().cpu()
            if accum > 1:
                parts /= accum
                for p in params:
                    if p.grad is not None:
                        p.grad.div_(accum)
            parts = dd.all_mean(parts).cpu()
            if not torch.isfinite(parts).all():
                where = f"; the last good checkpoint is {out} at step {last_saved}" if last_saved is not None \
                    else "; no checkpoint was written"
                raise ThresholdFailed(f"loss became {float(parts[0])} at step {step + 1}, training stopped"
                                      f"{where}")
            opt.step()
            done += 1
            n = step + 1
            tot = float(parts[0])
            if history["first"] is None:
                history["first"] = tot
            history["last"] = tot
            elapsed = time.perf_counter() - t0
            ips = done * batch_size / max(elapsed, 1e-9)
            if dd.main:
                bar.update(1)
                bar.set_postfix(total=f"{tot:.4g}", content=f"{float(parts[1]):.3g}",
                                style=f"{float(parts[2]):.3g}", tv=f"{float(parts[3]):.3g}",
                                img_s=f"{ips:.1f}")
                if log_f and (n % o.log_every == 0 or n == o.steps or n == start + 1):
                    rec = {"step": n, "total": tot, "content": float(parts[1]), "style": float(parts[2]),
                           "tv": float(parts[3]), "lr": lr, "images_per_s": round(ips, 3),
                           "elapsed_s": round(elapsed, 3)}
                    log_f.write(json.dumps(rec) + "\n")
                    log_f.flush()
            if n % o.checkpoint_every == 0 or n == o.steps:
                bad = [k for k, v in model.state_dict().items()
                       if v.is_floating_point() and not torch.isfinite(v).all()]
                if bad:
                    raise ThresholdFailed(f"weight {bad[0]} became NaN/Inf at step {n}, training stopped; "
                                          + (f"the last good checkpoint is {out} at step {last_saved}"
                                             if last_saved is not None else "no checkpoint was written"))
                ddp_info = rank_check(model, dd) if (dd.world > 1 and n == o.steps) else None
                if dd.main:
                    save(n, ddp_info)
                last_saved = n
                if ddp_info and ddp_info["max_rank_diff"] != 0.0:
                    raise ThresholdFailed(f"the {dd.world} ranks hold different weights (max abs diff "
                                          f"{ddp_info['max_rank_diff']:.3g})")
                summary_ddp.update(ddp_info or {})
    finally:
        bar.close()
        if log_f:
            log_f.close()

    summary = {"out": str(out), "step": max(start, o.steps) if done else start, "steps_run": done,
               "first_total": history["first"], "last_total": history["last"],
               "images_per_s": done * batch_size / max(time.perf_counter() - t0, 1e-9) if done else 0.0,
               "world_size": dd.world, "loss_net": getattr(vgg, "source", "?")}
    if summary_ddp:
        summary["max_rank_diff"] = summary_ddp["max_rank_diff"]
    return summary


def rank_check(model, dd: Dist) -> dict:
    """Compare every rank's weights with rank 0's (all ranks must call this together)."""
    flat = torch.cat([v.detach().float().reshape(-1) for v in model.state_dict().values()
                      if v.is_floating_point()])
    ref = flat.clone()
    dist.broadcast(ref, 0)
    diff = (flat - ref).abs().max().reshape(1)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return {"world_size": dd.world, "max_rank_diff": float(diff), "backend": dist.get_backend()}


def report(summary: dict) -> str:
    s = summary
    if not s["steps_run"]:
        return f"{s['out']}: already at step {s['step']}"
    msg = (f"wrote {s['out']}  (step {s['step']}, total loss {s['first_total']:.4g} -> {s['last_total']:.4g}, "
           f"{s['images_per_s']:.1f} images/s, loss net {s['loss_net']}")
    if s["world_size"] > 1:
        msg += f", {s['world_size']} processes, max weight diff between ranks {s['max_rank_diff']:.3g}"
    return msg + ")"
