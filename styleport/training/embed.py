"""``styleport embed``: where style images land in the 100-d style bottleneck, drawn in 2-D.

PCA (numpy SVD of the centred bottlenecks) always; t-SNE (exact, numpy only: perplexity-calibrated
Gaussian affinities, Student-t map, early exaggeration, momentum gradient descent; van der Maaten &
Hinton 2008) when there are enough points. Each point carries a thumbnail of its image, so the
"similar styles lie close" picture can be read at a glance. scikit-learn is not needed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from styleport.errors import BadInput
from styleport.images import pil_to_tensor, prepare
from styleport.training.data import ImageSet, collect, note


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, list]:
    """[N,D] -> ([N,2] coordinates, explained-variance ratios of the two components)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    xc = x - x.mean(0, keepdims=True)
    if n < 2:
        return np.zeros((n, 2)), [0.0, 0.0]
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    coords = u * s  # = xc @ vt.T
    # a deterministic sign: the largest-magnitude loading of each component is positive
    signs = np.sign(vt[np.arange(vt.shape[0]), np.abs(vt).argmax(1)])
    signs[signs == 0] = 1
    coords = coords * signs
    out = np.zeros((n, 2))
    k = min(2, coords.shape[1])
    out[:, :k] = coords[:, :k]
    var = s ** 2
    ratio = (var / var.sum()).tolist() if var.sum() > 0 else [0.0] * len(var)
    return out, (ratio + [0.0, 0.0])[:2]


def _affinities(x: np.ndarray, perplexity: float, tol: float = 1e-5, iters: int = 100) -> np.ndarray:
    d = np.square(x[:, None, :] - x[None, :, :]).sum(-1)
    n = x.shape[0]
    p = np.zeros((n, n))
    target = np.log(perplexity)
    for i in range(n):
        di = np.delete(d[i], i)
        lo, hi, beta = 0.0, np.inf, 1.0
        for _ in range(iters):
            w = np.exp(-(di - di.min()) * beta)
            sw = w.sum()
            h = np.log(sw) + beta * (w * (di - di.min())).sum() / sw  # entropy (nats)
            if abs(h - target) < tol:
                break
            if h > target:
                lo = beta
                beta = beta * 2 if hi == np.inf else (beta + hi) / 2
            else:
                hi = beta
                beta = (beta + lo) / 2
        p[i, np.arange(n) != i] = w / sw
    p = (p + p.T) / (2 * n)
    return np.maximum(p, 1e-12)


def tsne_2d(x: np.ndarray, perplexity: float | None = None, seed: int = 0, iters: int = 750) -> tuple[np.ndarray, float]:
    """Exact t-SNE to 2-D for small N (O(N^2) memory). Returns (coords, perplexity used)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    perp = float(perplexity) if perplexity else min(30.0, max(2.0, (n - 1) / 3.0))
    perp = min(perp, n - 1.0)
    # PCA to at most 50 dims, scaled, for stable distances
    xc = x - x.mean(0)
    scale = np.abs(xc).max() or 1.0
    xc = xc / scale
    p = _affinities(xc, perp)
    rng = np.random.default_rng(seed)
    y = rng.normal(0, 1e-4, (n, 2))
    vel = np.zeros_like(y)
    gains = np.ones_like(y)
    lr = max(n / 12.0, 50.0)
    for it in range(iters):
        exag = 12.0 if it < 250 else 1.0
        mom = 0.5 if it < 250 else 0.8
        diff = y[:, None, :] - y[None, :, :]
        num = 1.0 / (1.0 + np.square(diff).sum(-1))
        np.fill_diagonal(num, 0.0)
        q = np.maximum(num / num.sum(), 1e-12)
        pq = (exag * p - q) * num
        grad = 4.0 * (pq[:, :, None] * diff).sum(1)
        gains = np.where(np.sign(grad) != np.sign(vel), gains + 0.2, gains * 0.8).clip(0.01)
        vel = mom * vel - lr * gains * grad
        y = y + vel
        y = y - y.mean(0)
    return y, perp


def bottlenecks(model, images: list, size: int) -> np.ndarray:
    out = []
    with torch.no_grad():
        for img in images:
            t = pil_to_tensor(prepare(img, size, crop=True))
            out.append(model.predictor(t).reshape(-1).double().numpy())
    return np.stack(out)


def _thumb(img, px: int = 40) -> np.ndarray:
    small = prepare(img, px, crop=True)
    return np.asarray(small)


def plot(path: Path, panels: list, thumbs: list, labels: list, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 6), squeeze=False)
    for ax, (name, coords) in zip(axes[0], panels):
        ax.scatter(coords[:, 0], coords[:, 1], s=8, c="k")
        span = np.ptp(coords, axis=0) if len(coords) > 1 else np.ones(2)
        span = np.where(span > 0, span, 1.0)
        for (x, y), th, lab in zip(coords, thumbs, labels):
            ab = AnnotationBbox(OffsetImage(th, zoom=1.0), (x, y), frameon=True, pad=0.1)
            ax.add_artist(ab)
            ax.annotate(lab, (x, y), xytext=(0, -28), textcoords="offset points", ha="center", fontsize=7)
        lo, hi = coords.min(0) - 0.15 * span, coords.max(0) + 0.15 * span
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=100, format="png")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise BadInput(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        plt.close(fig)


def embed_command(args) -> int:
    from styleport.models.checkpoint import load_checkpoint

    out = Path(args.output)
    if out.suffix.lower() != ".png":
        raise BadInput(f"--output must be a .png file, got {out.name}")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise BadInput(f"output folder does not exist: {out.parent}")
    if args.json and not (Path(args.json).parent if str(Path(args.json).parent) else Path(".")).is_dir():
        raise BadInput(f"folder for --json does not exist: {Path(args.json).parent}")
    if args.size is not None and args.size < 16:
        raise BadInput("--size must be >= 16")
    if args.perplexity is not None and args.perplexity <= 0:
        raise BadInput("--perplexity must be > 0")
    model, doc = load_checkpoint(args.checkpoint)
    preset = doc["model"].get("preset")
    if getattr(model, "kind", None) != "arbitrary":
        raise BadInput(f"embed needs an arbitrary-style checkpoint (ghiasi, magenta-mobile); "
                       f"{args.checkpoint} is {preset}")
    size = args.size or getattr(model, "style_size", 256)
    if preset == "ghiasi" and size < 75:
        raise BadInput("ghiasi's Inception predictor needs --size >= 75")
    files = collect(args.styles, "style")
    images = ImageSet(files, "style", size)
    pil = [images.image(i, size) for i in range(len(images))]
    b = bottlenecks(model, pil, size)
    n = len(b)
    coords, ratio = pca_2d(b)
    panels = [(f"PCA ({ratio[0]:.0%} + {ratio[1]:.0%} of variance)", coords)]
    tsne = None
    if n >= max(args.tsne_min, 4):
        tcoords, perp = tsne_2d(b, args.perplexity, args.seed)
        panels.append((f"t-SNE (perplexity {perp:g})", tcoords))
        tsne = {"perplexity": perp, "seed": args.seed, "coords": tcoords.tolist()}
    elif n > 1:
        note(f"t-SNE skipped: {n} point(s), fewer than --tsne-min {args.tsne_min}")
    labels = [Path(p).stem[:18] for p in images.files]
    plot(out, panels, [_thumb(im) for im in pil], labels,
         f"style bottlenecks of {n} image(s): {preset} checkpoint {Path(args.checkpoint).name}")
    dist = np.sqrt(np.square(b[:, None] - b[None]).sum(-1))
    nearest = [int(np.argsort(row)[1]) if n > 1 else None for row in dist]
    if args.json:
        docj = {"schema": 1, "checkpoint": str(args.checkpoint), "preset": preset, "image_size": size,
                "plot": str(out), "skipped": images.skipped,
                "pca": {"explained_variance_ratio": ratio},
                "tsne": None if tsne is None else {"perplexity": tsne["perplexity"], "seed": tsne["seed"]},
                "points": [{"path": str(p), "pca": coords[i].tolist(),
                            "tsne": None if tsne is None else tsne["coords"][i],
                            "nearest": None if nearest[i] is None else str(images.files[nearest[i]]),
                            "bottleneck": b[i].round(6).tolist()}
                           for i, p in enumerate(images.files)]}
        Path(args.json).write_text(json.dumps(docj, indent=1) + "\n")
    print(f"wrote {out}  ({n} style image(s), PCA" + (" + t-SNE" if tsne else "") + ")")
    return 0
