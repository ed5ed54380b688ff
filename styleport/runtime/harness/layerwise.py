"""Layer-wise localisation: run two versions of one network, read every intermediate tensor and
report the first layer whose output drifts past the tolerance.

ONNX: every node output is added as a graph output (no type needed; ONNX Runtime infers it) and
the graph runs with optimisations off so no node is fused away.
TFLite: the interpreter is opened with experimental_preserve_all_tensors=True (XNNPACK off) and
each operator's outputs are read in execution order.
ExecuTorch: an ETDump with a debug buffer (the pip runtime has the event tracer); it holds the
outputs of each portable kernel and each XNNPACK delegate call, not the ops inside a delegate, so a
program lowered whole to XNNPACK shows a handful of tensors (the delegates' boundaries).

Matching:
  ONNX vs ONNX   by tensor name when at least half the names agree, else like ONNX vs TFLite.
  ONNX vs TFLite by shape (NCHW -> NHWC) and order: walking the reference's tensors in graph
                 order, each is paired with the candidate tensor of the same shape, keeping both orders
                 (an alignment by dynamic programming), preferring pairs whose values are closest. Converters fuse,
                 split and reorder ops, so some tensors have no partner and a match can be wrong
                 where neighbouring layers have equal shapes and similar values: read the table as a
                 guide to where drift starts, not as proof.
  torch vs ONNX/TFLite  the reference is a checkpoint folder: forward hooks on every leaf module
                 (conv, norm, pad, activation) record outputs in execution order, and they are aligned
                 with the candidate's tensors by shape and order as above. Names do not line up
                 (the exporters decompose and fold ops), so conv outputs are the reliable anchors.
Error per layer: max_abs, relative error max_abs / max|ref| ("rel") and SNR in dB; a layer fails
when rel > ``tol`` (default 1e-3).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from styleport.errors import BadInput
from styleport.runtime.harness import tolerances as M
from styleport.runtime.harness.adapt import IOPlan
from styleport.runtime.runners.base import TensorSpec
from styleport.runtime.runners.registry import format_of, make_runner



def onnx_intermediates(path: Path, plan_size, given, seed, threads=None):
    """(plan, canonical feeds, [(name, op_type, array NCHW-as-is)]) in graph order."""
    import onnx
    m = onnx.load(str(path))
    have = {o.name for o in m.graph.output}
    order = []
    for node in m.graph.node:
        for o in node.output:
            if o:
                order.append((o, node.op_type))
                if o not in have:
                    m.graph.output.append(onnx.ValueInfoProto(name=o))
    r = make_runner("onnxruntime", path, threads=threads, model_bytes=m.SerializeToString(),
                    optimization="disable")
    with r:
        ins = r.input_specs()
        outs = [s for s in r.output_specs() if s.name in have]
        plan = IOPlan(ins, outs, plan_size)
        canonical = plan.canonical_feeds(given, seed)
        res = r.run(plan.feeds(canonical))
    tensors = [(n, op, np.asarray(res[n])) for n, op in order if n in res]
    return plan, canonical, tensors, plan.canonical_outputs({s.name: res[s.name] for s in outs})


def tflite_intermediates(path: Path, plan_size, given, seed, threads=None):
    r = make_runner("litert", path, threads=threads, xnnpack=False, preserve_all_tensors=True)
    with r:
        plan = IOPlan(r.input_specs(), r.output_specs(), plan_size)
        canonical = plan.canonical_feeds(given, seed)
        outs = r.run(plan.feeds(canonical))
        it = r.it
        tensors = []
        for op in it._get_ops_details():
            for idx in op["outputs"]:
                if idx < 0:
                    continue
                try:
                    arr = it.get_tensor(int(idx))
                except ValueError:
                    continue
                name = it._get_tensor_details(int(idx), 0)["name"] if _has_td(it) else str(idx)
                tensors.append((name, op["op_name"], np.array(arr)))
        return plan, canonical, tensors, plan.canonical_outputs(outs)


def executorch_intermediates(path: Path, plan_size, given, seed, threads=None):
    """ETDump with a debug buffer (executorch.devtools.Inspector): outputs of each portable kernel and of
    each XNNPACK delegate call; the tensors inside a delegate are not exposed by XNNPACK."""
    r = make_runner("executorch", path, threads=threads)
    with r:
        plan = IOPlan(r.input_specs(), r.output_specs(), plan_size)
        canonical = plan.canonical_feeds(given, seed)
        feeds = plan.feeds(canonical)
        outs = r.run(feeds)
        tensors = r.intermediates(feeds)
    return plan, canonical, tensors, plan.canonical_outputs(outs)


def _has_td(it) -> bool:
    try:
        it._get_tensor_details(0, 0)
        return True
    except Exception:  # noqa: BLE001
        return False


def torch_intermediates(ckpt: Path, network: str, canonical: dict):
    """Leaf-module outputs of the checkpoint's ``network`` in execution order, on canonical feeds."""
    import torch

    from styleport.models.checkpoint import load_checkpoint
    model, _ = load_checkpoint(ckpt)
    t = {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in canonical.items()}
    if network == "predictor":
        module, args = model.predictor, (t["style_image"],)
    elif model.kind == "arbitrary":
        module, args = model.transformer, (t["content_image"], t["style_bottleneck"].reshape(-1, 100, 1, 1))
    elif model.kind == "multi":
        module, args = model, (t["content_image"], t["style_weights"])
    else:
        module, args = model, (t["content_image"],)
    tensors, hooks = [], []
    for name, m in module.named_modules():
        if not list(m.children()):
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out, name=name: tensors.append((name or type(mod).__name__, type(mod).__name__,
                                                                 out.detach().numpy().copy()))
                if isinstance(out, torch.Tensor) else None))
    try:
        with torch.no_grad():
            final = module(*args)
    finally:
        for h in hooks:
            h.remove()
    key = "style_bottleneck" if network == "predictor" else "stylized_image"
    out = final.numpy().reshape(1, -1) if network == "predictor" else final.numpy()
    return tensors, {key: out}


def intermediates(path, size, given, seed, threads=None):
    fmt = format_of(path)
    if fmt == "onnx":
        return fmt, *onnx_intermediates(Path(path), size, given, seed, threads)
    if fmt == "tflite":
        return fmt, *tflite_intermediates(Path(path), size, given, seed, threads)
    if fmt == "executorch":
        return fmt, *executorch_intermediates(Path(path), size, given, seed, threads)
    raise BadInput(f"--layerwise takes .onnx, .tflite or .pte files, not {Path(path).name}")


def _floaty(a: np.ndarray) -> bool:
    return a.dtype.kind == "f" and a.size > 1


def _to_nhwc(a: np.ndarray) -> np.ndarray:
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


def layer_errors(ref: np.ndarray, cand: np.ndarray) -> dict:
    r, c = ref.astype(np.float64), cand.astype(np.float64)
    if not np.isfinite(c).all():
        return {"max_abs": None, "rel": None, "snr_db": None, "nonfinite": int((~np.isfinite(c)).sum())}
    d = np.abs(r - c)
    peak = float(np.abs(r).max()) if r.size else 0.0
    mx = float(d.max()) if d.size else 0.0
    return {"max_abs": mx, "rel": mx / peak if peak > 0 else (0.0 if mx == 0 else float("inf")),
            "snr_db": M.snr_db(r, c), "nonfinite": 0}


def match(ref_t, cand_t, ref_fmt, cand_fmt):
    """[(ref_entry, cand_entry)] pairs, see the module notes."""
    ref_t = [t for t in ref_t if _floaty(t[2])]
    cand_t = [t for t in cand_t if _floaty(t[2])]
    if ref_fmt == cand_fmt == "onnx":
        names = {t[0]: t for t in cand_t}
        common = [t for t in ref_t if t[0] in names and names[t[0]][2].shape == t[2].shape]
        if len(common) >= max(1, len(ref_t) // 2):
            return [(t, names[t[0]]) for t in common], "name"
    conv = ref_fmt in ("onnx", "executorch") and cand_fmt == "tflite"
    refs = [_to_nhwc(t[2]) if conv else t[2] for t in ref_t]
    n, m = len(refs), len(cand_t)
    # Order-preserving alignment (dynamic programming, like sequence alignment): a same-shape pair
    # scores 1/(1 + rel/0.1) - 0.1, so close values win, and a pair worse than rel ~ 0.9 is never
    # taken; either side may skip tensors (fused, split or decomposed ops).
    score = np.zeros((n + 1, m + 1))
    take = np.zeros((n + 1, m + 1), dtype=np.int8)   # 0 skip ref, 1 skip cand, 2 match
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            best, how = score[i - 1, j], 0
            if score[i, j - 1] > best:
                best, how = score[i, j - 1], 1
            c = cand_t[j - 1][2]
            if c.shape == refs[i - 1].shape:
                rel = layer_errors(refs[i - 1], c)["rel"]
                w = (1.0 / (1.0 + (rel if rel is not None else 1e9) / 0.1)) - 0.1
                if w > 0 and score[i - 1, j - 1] + w > best:
                    best, how = score[i - 1, j - 1] + w, 2
            score[i, j], take[i, j] = best, how
    pairs, i, j = [], n, m
    while i > 0 and j > 0:
        if take[i, j] == 2:
            pairs.append((ref_t[i - 1], cand_t[j - 1]))
            i, j = i - 1, j - 1
        elif take[i, j] == 1:
            j -= 1
        else:
            i -= 1
    pairs.reverse()
    return pairs, "shape+order"


def layerwise(ref_path, cand_path, size=(64, 64), given=None, seed=0, tol=1e-3, threads=None) -> dict:
    if Path(ref_path).is_dir() and (Path(ref_path) / "config.json").is_file():
        # torch reference: the candidate fixes the inputs, the checkpoint runs on the same ones
        cf, cplan, canonical, ct, cout = intermediates(cand_path, size, given, seed, threads)
        network = "predictor" if "style_image" in canonical else "transformer"
        rt, rout = torch_intermediates(Path(ref_path), network, canonical)
        rf = "torch"
        if cf == "tflite":
            # TFLite fuses ReLU/ReLU6 into the op before it: that op's pre-activation output has
            # no partner there, so leave it out rather than pair it with the activated tensor.
            acts = ("ReLU", "ReLU6", "Hardtanh")
            rt = [t for i, t in enumerate(rt) if not (i + 1 < len(rt) and rt[i + 1][1] in acts
                                                      and rt[i + 1][2].shape == t[2].shape)]
        pairs, how = match(rt, ct, "onnx", cf)  # torch tensors are NCHW, like ONNX's
        how = f"{how} (torch leaf modules)"
    else:
        rf, rplan, canonical, rt, rout = intermediates(ref_path, size, given, seed, threads)
        cf, cplan, _, ct, cout = intermediates(cand_path, size, canonical, seed, threads)
        pairs, how = match(rt, ct, rf, cf)
    conv = rf in ("onnx", "torch", "executorch") and cf == "tflite"
    rows, first = [], None
    for i, (r, c) in enumerate(pairs):
        ra = _to_nhwc(r[2]) if conv else r[2]
        e = layer_errors(ra, c[2])
        bad = e["nonfinite"] or e["rel"] is None or e["rel"] > tol
        row = {"index": i, "reference": r[0], "ref_op": r[1], "candidate": c[0], "cand_op": c[1],
               "shape": list(r[2].shape), **e, "pass": not bad}
        rows.append(row)
        if bad and first is None:
            first = row
    final = {}
    for k in rout:
        if k in cout:
            final[k] = M.compare(rout[k], cout[k], "image" if rout[k].ndim == 4 else "vector")
    doc = {"reference": str(ref_path), "candidate": str(cand_path), "matching": how, "tolerance_rel": tol,
           "reference_tensors": len([t for t in rt if _floaty(t[2])]),
           "candidate_tensors": len([t for t in ct if _floaty(t[2])]), "matched": len(pairs),
           "first_failing": first, "layers": rows, "final": final}
    if "executorch" in (rf, cf):
        doc["note"] = ("ExecuTorch shows only the outputs of its XNNPACK delegates and portable kernels" + (
            "; with a checkpoint as reference they have no leaf-module partner where a delegate ends on a "
            "residual add or the output sigmoid, so such pairs are wrong: compare against the .onnx of the "
            "same network instead" if rf == "torch" else ""))
    return doc


def _short(name: str, n: int = 40) -> str:
    name = name.split(";")[0]
    return name if len(name) <= n else "..." + name[-(n - 3):]


def render(doc: dict, limit: int = 60) -> str:
    lines = [f"layer-wise: {Path(doc['reference']).name} -> {Path(doc['candidate']).name} "
             f"(matched {doc['matched']} of {doc['reference_tensors']} reference tensors by {doc['matching']}; "
             f"fail when max_abs/max|ref| > {doc['tolerance_rel']:g})",
             "| # | reference tensor | op | candidate tensor | shape | max_abs | rel | SNR dB | ok |",
             "|---|---|---|---|---|---|---|---|---|"]
    rows = doc["layers"]
    first = doc["first_failing"]
    show = rows if len(rows) <= limit else rows[: limit // 2] + rows[-limit // 2:]
    if first is not None and first not in show:
        show = sorted(show + [first], key=lambda r: r["index"])

    def f(v, spec):
        return "-" if v is None else format(v, spec)
    for r in show:
        lines.append(f"| {r['index']} | {_short(r['reference'])} | {r['ref_op']} | {_short(r['candidate'])} | "
                     f"{'x'.join(map(str, r['shape']))} | {f(r['max_abs'], '.3g')} | {f(r['rel'], '.3g')} | "
                     f"{f(r['snr_db'], '.1f')} | {'yes' if r['pass'] else 'NO'} |")
    if first is None:
        lines.append("no matched layer exceeds the tolerance")
    else:
        lines.append(f"first layer over tolerance: #{first['index']} {first['reference']} ({first['ref_op']}) "
                     f"~ {_short(first['candidate'], 80)}: rel {f(first['rel'], '.3g')}")
    if doc.get("note"):
        lines.append(f"note: {doc['note']}")
    return "\n".join(lines)


_ = TensorSpec
