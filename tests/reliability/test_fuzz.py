"""Property tests (hypothesis): preprocessing always yields a [0,1] tensor of the declared shape; any
JSON thrown at the manifest parser raises only our validation error. >= 10^4 examples in total."""

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from styleport.errors import BadInput
from styleport.images import pil_to_tensor, prepare, to_rgb
from styleport.manifest import validate

MODES = ["RGB", "RGBA", "L", "LA", "P", "1", "I;16", "CMYK", "I", "F"]


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mode=st.sampled_from(MODES), w=st.integers(1, 48), h=st.integers(1, 48), size=st.integers(1, 40),
       crop=st.booleans(), seed=st.integers(0, 2**16))
def test_preprocessing_any_size_and_mode(mode, w, h, size, crop, seed):
    rng = np.random.default_rng(seed)
    if mode in ("I;16",):
        img = Image.fromarray(rng.integers(0, 65535, (h, w)).astype(np.uint16))
    elif mode == "I":
        img = Image.fromarray(rng.integers(0, 2**20, (h, w)).astype(np.int32))
    elif mode == "F":
        img = Image.fromarray(rng.random((h, w)).astype(np.float32))
    else:
        img = Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).convert(mode)
    t = pil_to_tensor(prepare(to_rgb(img), size, crop=crop))
    assert t.dtype.is_floating_point and t.shape[:2] == (1, 3)
    if crop:
        assert tuple(t.shape[2:]) == (size, size)
    else:
        assert min(t.shape[2:]) in (size, size - 1, size + 1)
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)

KEYS = ["schema", "kind", "artifacts", "model", "format", "precision", "path", "bytes", "sha256", "inputs",
        "outputs", "name", "shape", "dtype", "layout", "range"]


def _valid():
    io = {"name": "content_image", "shape": [1, 3, 8, 8], "dtype": "float32", "layout": "NCHW", "range": [0, 1]}
    return {"schema": 1, "kind": "styleport-bundle",
            "artifacts": [{"model": "transformer", "format": "onnx", "precision": "fp32", "path": "onnx/t.onnx",
                           "bytes": 3, "sha256": "a" * 64, "inputs": [io], "outputs": [dict(io)]}]}


def test_valid_manifest_passes():
    validate(_valid())


@settings(max_examples=4000, deadline=None)
@given(json_values)
def test_random_json_raises_only_validation_error(doc):
    try:
        validate(json.loads(json.dumps(doc)))
    except BadInput:
        pass


@settings(max_examples=4000, deadline=None)
@given(path=st.lists(st.sampled_from(KEYS + [0]), min_size=1, max_size=5), value=json_values)
def test_mutated_manifest_raises_only_validation_error(path, value):
    doc = _valid()
    node = doc
    for key in path[:-1]:
        if isinstance(node, dict) and key in node and isinstance(node[key], (dict, list)):
            node = node[key]
        elif isinstance(node, list) and node:
            node = node[0]
    last = path[-1]
    if isinstance(node, dict):
        node[last] = value
    elif isinstance(node, list) and node:
        node[0] = value
    try:
        validate(doc)
    except BadInput:
        pass


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=30))
def test_manifest_paths_never_escape(p):
    doc = _valid()
    doc["artifacts"][0]["path"] = p
    try:
        validate(doc)
    except BadInput:
        return
    assert not p.startswith("/") and ".." not in p.split("/") and "\\" not in p
