"""Layout, range and dtype adaptation between the harness's canonical tensors and a model's own I/O.

Canonical forms (what parity compares and what reference runners see):
  images (content_image, style_image, stylized_image)  float32 NCHW [1,3,H,W], values in [0,1]
  style_bottleneck                                      float32 [1,100] (from [1,100,1,1] or [1,1,1,100])
  anything else (style_weights [1,N], unknown tensors)  float32, the model's own shape

8-bit image I/O (a CoreML ImageType, manifest dtype uint8 with range [0, 255]): canonical [0,1]
images are mapped to pixels by ``round(x * 255)``, and the canonical feeds given to such a model
(seeded random or resized) are put on the 8-bit grid first (``round(x * 255) / 255``), so the
reference sees exactly the pixels the model sees and the round trip canonical -> pixels -> canonical
is exact.

A model's layout comes from the manifest (layout NCHW/NHWC, range [lo,hi], color RGB/BGR) or, for
bare files, from the user's conventions (``--reference-range 0,255``, ``--candidate-order bgr``: see
runtime/harness/targets.py) and the shape (a 3 in axis 1 -> NCHW, in the last axis -> NHWC). Inputs are matched by
name, then by role (guessed from name and shape), then by position.
"""

from __future__ import annotations

import numpy as np

from styleport.errors import BadInput
from styleport.runtime.runners.base import TensorSpec

IMAGE_ROLES = ("content_image", "style_image", "stylized_image")
BOTTLENECK = "style_bottleneck"


def _numel(shape) -> int | None:
    n = 1
    for d in shape:
        if not isinstance(d, int):
            return None
        n *= d
    return n


def image_layout(spec: TensorSpec) -> str | None:
    """NCHW / NHWC for a 4-D RGB image tensor, None otherwise."""
    s = spec.shape
    if len(s) != 4:
        return None
    if spec.layout in ("NCHW", "NHWC") and (s[1] == 3 or s[3] == 3):
        return spec.layout
    if s[1] == 3 and s[3] != 3:
        return "NCHW"
    if s[3] == 3 and s[1] != 3:
        return "NHWC"
    if s[1] == 3 and s[3] == 3:
        return spec.layout if spec.layout in ("NCHW", "NHWC") else "NCHW"
    return None


def is_bottleneck(spec: TensorSpec) -> bool:
    name = spec.name.lower()
    if "bottleneck" in name:
        return True
    s = spec.shape
    return (len(s) == 4 and _numel(s) == 100 and sum(1 for d in s if d == 1) == 3)


def role(spec: TensorSpec, is_input: bool, sibling_roles: tuple = ()) -> str:
    """Best guess at what a tensor is: content_image, style_image, stylized_image, style_bottleneck,
    style_weights, or the tensor's own name."""
    name = spec.name.lower()
    for r in ("content_image", "style_image", "stylized_image", "style_bottleneck", "style_weights"):
        if name == r or name.endswith(r) or name.startswith(r):
            return r
    if is_bottleneck(spec):
        return BOTTLENECK
    if image_layout(spec):
        if not is_input:
            return "stylized_image"
        if "content" in name:
            return "content_image"
        if "style" in name:
            return "style_image"
        return "style_image" if "predictor" in sibling_roles else "content_image"
    if "weight" in name and len(spec.shape) == 2:
        return "style_weights"
    return spec.name


def assign_roles(inputs: list[TensorSpec], outputs: list[TensorSpec]) -> tuple[list[str], list[str]]:
    outs = [role(s, False) for s in outputs]
    hint = ("predictor",) if outs and all(r == BOTTLENECK for r in outs) else ()
    ins = [role(s, True, hint) for s in inputs]
    # Two unnamed image inputs: the first is content, the second style.
    seen = set()
    for i, r in enumerate(ins):
        if r in seen and r in IMAGE_ROLES:
            ins[i] = "style_image" if r == "content_image" else r
        seen.add(ins[i])
    return ins, outs


def model_role(inputs, outputs) -> str:
    """transformer / predictor / model, from the I/O."""
    ins, outs = assign_roles(inputs, outputs)
    if outs and outs[0] == BOTTLENECK:
        return "predictor"
    if "stylized_image" in outs or "content_image" in ins:
        return "transformer"
    return "model"


def concrete_shape(spec: TensorSpec, size: tuple[int, int]) -> tuple:
    """Fill free dimensions: batch 1, spatial dims of an image from ``size`` (H, W), others 1."""
    lay = image_layout(spec)
    out = []
    for i, d in enumerate(spec.shape):
        if isinstance(d, int) and d > 0:
            out.append(d)
        elif lay == "NCHW" and i in (2, 3):
            out.append(size[i - 2])
        elif lay == "NHWC" and i in (1, 2):
            out.append(size[i - 1])
        else:
            out.append(1)
    return tuple(out)


def canonical_shape(spec: TensorSpec, r: str, size) -> tuple:
    shape = concrete_shape(spec, size)
    lay = image_layout(spec)
    if lay == "NHWC":
        return (shape[0], shape[3], shape[1], shape[2])
    if lay == "NCHW":
        return shape
    if r == BOTTLENECK:
        return (1, _numel(shape))
    return shape


def pixel_levels(spec: TensorSpec) -> int | None:
    """255 for an 8-bit image input (integer dtype, range [0, 255], no quantization params), else None."""
    if (image_layout(spec) and spec.quantization is None and spec.dtype in ("uint8", "int16", "int32")
            and spec.range is not None and list(spec.range) == [0, 255]):
        return 255
    return None


def on_pixel_grid(arr: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """A canonical [0,1] image rounded to the levels an 8-bit image input can hold (unchanged otherwise)."""
    levels = pixel_levels(spec)
    if levels is None:
        return arr
    return (np.round(np.clip(arr, 0.0, 1.0) * levels) / levels).astype(np.float32)


def random_canonical(spec: TensorSpec, r: str, size, rng: np.random.Generator) -> np.ndarray:
    """Seeded data: uniform [0,1) for images, bottlenecks and unknown float inputs (inside the
    declared range when the manifest gives one); style_weights a random convex mix."""
    shape = canonical_shape(spec, r, size)
    if r == "style_weights":
        w = rng.random(shape).astype(np.float32) + 1e-3
        return w / w.sum(axis=-1, keepdims=True)
    arr = rng.random(shape, dtype=np.float32)
    if spec.dtype.startswith("int") or spec.dtype.startswith("uint"):
        return on_pixel_grid(arr, spec)
    if spec.range and not image_layout(spec):
        lo, hi = spec.range
        arr = (arr * (hi - lo) + lo).astype(np.float32)
    return arr


def fit_image(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    """Resize a canonical [1,3,h0,w0] image so it covers h x w (bicubic), then centre-crop."""
    if arr.shape[2:] == (h, w):
        return arr
    from PIL import Image
    img = Image.fromarray((np.clip(arr[0].transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8))
    s = max(h / img.height, w / img.width)
    img = img.resize((max(w, round(img.width * s)), max(h, round(img.height * s))), Image.Resampling.BICUBIC)
    left, top = (img.width - w) // 2, (img.height - h) // 2
    img = img.crop((left, top, left + w, top + h))
    return (np.asarray(img, dtype=np.float32) / 255.0).transpose(2, 0, 1)[None].copy()


def to_model(arr: np.ndarray, spec: TensorSpec, r: str, size) -> np.ndarray:
    """Canonical array -> what the model takes (layout, range, dtype, quantization)."""
    shape = concrete_shape(spec, size)
    lay = image_layout(spec)
    x = np.asarray(arr, dtype=np.float32)
    if lay:
        hh, ww = (shape[2], shape[3]) if lay == "NCHW" else (shape[1], shape[2])
        x = fit_image(x, hh, ww)
        if spec.range and list(spec.range) != [0, 1]:
            lo, hi = spec.range
            x = x * (hi - lo) + lo
        if spec.color == "BGR":
            x = x[:, ::-1]
        if lay == "NHWC":
            x = x.transpose(0, 2, 3, 1)
    else:
        if _numel(shape) is not None and x.size == _numel(shape):
            x = x.reshape(shape)
        elif x.shape != shape:
            raise BadInput(f"input {spec.name}: got shape {list(x.shape)}, model wants {list(shape)}")
    if spec.quantization and spec.dtype in ("int8", "uint8", "int16"):
        scale, zp = spec.quantization
        info = np.iinfo(spec.dtype)
        x = np.clip(np.round(x / scale) + zp, info.min, info.max)
    elif np.dtype(spec.dtype).kind in "iu":   # e.g. 8-bit pixels: round, never truncate
        info = np.iinfo(spec.dtype)
        x = np.clip(np.round(x), info.min, info.max)
    return np.ascontiguousarray(x.astype(spec.dtype, copy=False))


def from_model(arr: np.ndarray, spec: TensorSpec, r: str) -> np.ndarray:
    """A model's output -> canonical float32."""
    x = np.asarray(arr)
    if spec.quantization and x.dtype.kind in "iu":
        scale, zp = spec.quantization
        x = (x.astype(np.float32) - zp) * scale
    x = x.astype(np.float32, copy=False)
    lay = image_layout(TensorSpec(spec.name, list(x.shape), layout=spec.layout))
    if lay:
        if lay == "NHWC":
            x = x.transpose(0, 3, 1, 2)
        if spec.color == "BGR":
            x = x[:, ::-1]
        if spec.range and list(spec.range) != [0, 1]:
            lo, hi = spec.range
            x = (x - lo) / (hi - lo)
        return np.ascontiguousarray(x)
    if r == BOTTLENECK:
        return x.reshape(x.shape[0], -1)
    return x


def merge_manifest(specs: list[TensorSpec], entries: list[dict] | None) -> list[TensorSpec]:
    """Overlay a manifest's layout/range (and names, when positions line up) on runner specs."""
    if not entries:
        return specs
    by_name = {e["name"]: e for e in entries}
    out = []
    for i, s in enumerate(specs):
        e = by_name.get(s.name) or (entries[i] if len(entries) == len(specs) else None)
        if e is None:
            out.append(s)
            continue
        out.append(TensorSpec(s.name, s.shape, s.dtype, e.get("layout") or s.layout, e.get("range", s.range),
                              s.quantization, e.get("color", s.color)))
    return out


class IOPlan:
    """The mapping from canonical feeds to one model's inputs and back, for one input size."""

    def __init__(self, inputs: list[TensorSpec], outputs: list[TensorSpec], size=(256, 256)):
        self.inputs, self.outputs = inputs, outputs
        self.in_roles, self.out_roles = assign_roles(inputs, outputs)
        self.size = tuple(size)

    @property
    def model_role(self) -> str:
        return model_role(self.inputs, self.outputs)

    def canonical_feeds(self, given: dict | None = None, seed: int = 0) -> dict:
        """Canonical arrays keyed by role: ``given`` ones (by role or model input name), the rest
        seeded random. Images given at another size are resized and cropped to the model's."""
        given = dict(given or {})
        out = {}
        for i, (s, r) in enumerate(zip(self.inputs, self.in_roles)):
            arr = given.get(r)
            if arr is None:
                arr = given.get(s.name)
            if arr is None:
                rng = np.random.default_rng([seed, _stable(r)])
                arr = random_canonical(s, r, self.size, rng)
            elif image_layout(s):
                shape = canonical_shape(s, r, self.size)
                arr = on_pixel_grid(fit_image(np.asarray(arr, np.float32), shape[2], shape[3]), s)
            out[r] = np.asarray(arr, np.float32)
        return out

    def feeds(self, canonical: dict) -> dict:
        feeds = {}
        for i, (s, r) in enumerate(zip(self.inputs, self.in_roles)):
            if r not in canonical:
                raise BadInput(f"no data for model input {s.name!r} ({r})")
            feeds[s.name] = to_model(canonical[r], s, r, self.size)
        return feeds

    def canonical_outputs(self, outs: dict) -> dict:
        return {r: from_model(outs[s.name], s, r) for s, r in zip(self.outputs, self.out_roles)}

    def input_size(self) -> list | None:
        for s, r in zip(self.inputs, self.in_roles):
            lay = image_layout(s)
            if lay:
                sh = concrete_shape(s, self.size)
                return [sh[2], sh[3]] if lay == "NCHW" else [sh[1], sh[2]]
        return None


def _stable(text: str) -> int:
    import zlib
    return zlib.crc32(text.encode())


def match_outputs(ref: dict, cand: dict) -> list[tuple[str, str]]:
    """Pairs (ref_key, cand_key) of canonical outputs: same role first, then position."""
    pairs, used = [], set()
    for k in ref:
        if k in cand:
            pairs.append((k, k))
            used.add(k)
    rest_r = [k for k in ref if k not in cand]
    rest_c = [k for k in cand if k not in used]
    pairs += list(zip(rest_r, rest_c))
    return pairs
