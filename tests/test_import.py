"""Import: pytorch/examples fast_neural_style state dicts; Google's Magenta TFLite files (optional data)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import SHARED, assert_one_line_error, run_cli
from styleport.cli import main
from styleport.models.checkpoint import load_checkpoint
from styleport.models.presets import count_params


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --- an independent reference: pytorch/examples fast_neural_style/neural_style/transformer_net.py --------
# (widths as parameters so reduced-width variants can be made; outputs raw 0..255 values)

class ConvLayer(nn.Module):
    def __init__(self, cin, cout, kernel_size, stride):
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(cin, cout, kernel_size, stride)

    def forward(self, x):
        return self.conv2d(self.reflection_pad(x))


class ResidualBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x):
        residual = x
        out = self.relu(self.in1(self.conv1(x)))
        out = self.in2(self.conv2(out))
        return out + residual


class UpsampleConvLayer(nn.Module):
    def __init__(self, cin, cout, kernel_size, stride, upsample=None):
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(cin, cout, kernel_size, stride)

    def forward(self, x):
        if self.upsample:
            x = nn.functional.interpolate(x, mode="nearest", scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x))


class TransformerNet(nn.Module):
    def __init__(self, c=(32, 64, 128)):
        super().__init__()
        self.conv1 = ConvLayer(3, c[0], kernel_size=9, stride=1)
        self.in1 = nn.InstanceNorm2d(c[0], affine=True)
        self.conv2 = ConvLayer(c[0], c[1], kernel_size=3, stride=2)
        self.in2 = nn.InstanceNorm2d(c[1], affine=True)
        self.conv3 = ConvLayer(c[1], c[2], kernel_size=3, stride=2)
        self.in3 = nn.InstanceNorm2d(c[2], affine=True)
        self.res1, self.res2, self.res3, self.res4, self.res5 = (ResidualBlock(c[2]) for _ in range(5))
        self.deconv1 = UpsampleConvLayer(c[2], c[1], kernel_size=3, stride=1, upsample=2)
        self.in4 = nn.InstanceNorm2d(c[1], affine=True)
        self.deconv2 = UpsampleConvLayer(c[1], c[0], kernel_size=3, stride=1, upsample=2)
        self.in5 = nn.InstanceNorm2d(c[0], affine=True)
        self.deconv3 = ConvLayer(c[0], 3, kernel_size=9, stride=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.relu(self.in1(self.conv1(x)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        for r in (self.res1, self.res2, self.res3, self.res4, self.res5):
            y = r(y)
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


def _reference(channels, seed=0):
    torch.manual_seed(seed)
    net = TransformerNet(channels)
    with torch.no_grad():  # non-trivial instance-norm affines, like a trained network
        for name, p in net.named_parameters():
            if ".weight" in name and p.dim() == 1:
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.3 * torch.randn_like(p))
    return net.eval()


@pytest.mark.parametrize("channels,legacy", [((32, 64, 128), False), ((16, 32, 64), True)])
def test_fast_neural_style_import_matches_reference(tmp_path, channels, legacy, capsys):
    ref = _reference(channels)
    state = ref.state_dict()
    if legacy:  # torch < 0.4 saved running stats for InstanceNorm; pytorch/examples drops them
        for k in [k for k in state if k.endswith("in1.weight")]:
            c = state[k].shape[0]
            state[k.replace("weight", "running_mean")] = torch.zeros(c)
            state[k.replace("weight", "running_var")] = torch.ones(c)
    path = tmp_path / ("legacy.pth" if legacy else "model.pth")
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    assert main(["import", "--from", "fast-neural-style", str(path), "--out", str(tmp_path / "ck")]) == 0
    assert "johnson" in capsys.readouterr().out
    model, doc = load_checkpoint(tmp_path / "ck")
    assert doc["model"]["preset"] == "johnson" and doc["model"]["output"] == "linear255"
    assert doc["model"]["width"] == channels[0] / 32
    assert doc["imported_from"]["format"] == "fast-neural-style"
    x = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = ref(x * 255.0)           # pytorch/examples: 0..255 in, 0..255 out
        got = model(x) * 255.0
    assert got.shape == want.shape
    err = (got - want).abs().max().item()
    assert err <= 1e-3 * max(1.0, want.abs().max().item()), err


def test_fast_neural_style_bad_files(tmp_path):
    p = run_cli("import", "--from", "fast-neural-style", tmp_path / "missing.pth", "--out", tmp_path / "ck")
    assert_one_line_error(p, 2, "not found")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x80\x02not a pickle at all")
    assert main(["import", "--from", "fast-neural-style", str(junk), "--out", str(tmp_path / "ck")]) == 2

    class Evil:  # arbitrary objects are refused by weights_only=True: never unpickled
        def __reduce__(self):
            return (print, ("pwned",))
    torch.save({"conv1.conv2d.weight": Evil()}, tmp_path / "evil.pth")
    assert main(["import", "--from", "fast-neural-style", str(tmp_path / "evil.pth"),
                 "--out", str(tmp_path / "ck")]) == 2
    sd = _reference((8, 16, 32)).state_dict()
    del sd["res3.conv1.conv2d.weight"]
    torch.save(sd, tmp_path / "partial.pth")
    p = run_cli("import", "--from", "fast-neural-style", tmp_path / "partial.pth", "--out", tmp_path / "ck")
    assert_one_line_error(p, 2, "res3.conv1.conv2d.weight")
    assert not (tmp_path / "ck").exists()
    p = run_cli("import", "--from", "magenta-tflite", "--predictor", tmp_path / "x.tflite", "--out", tmp_path / "ck")
    assert_one_line_error(p, 2, "--transfer")


# --- Magenta TFLite (optional third-party data) ---------------------------------------------------------

def _psnr(a, b, peak=1.0):
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak ** 2 / mse)


def _tflite(path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(model_path=str(path),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()

    def run(**feeds):
        for d in it.get_input_details():
            it.set_tensor(d["index"], feeds[d["name"]])
        it.invoke()
        return it.get_tensor(it.get_output_details()[0]["index"])
    return run


def _nhwc(t):
    return np.ascontiguousarray(t.detach().permute(0, 2, 3, 1).numpy())


def test_magenta_tflite_import_matches_google(tmp_path, magenta_dir, capsys):
    """Acceptance: on the shared paintings and photos, the imported model's bottleneck matches Google's
    int8 predictor and its stylised output matches Google's f16 transfer file fed the same bottleneck,
    both at PSNR >= 40 dB (bottleneck PSNR relative to its value range, images to peak 1)."""
    from styleport.images import load_tensor

    pred, f16 = magenta_dir / "style_predict_quantized_256.tflite", magenta_dir / "style_transfer_f16_384.tflite"
    assert main(["import", "--from", "magenta-tflite", "--predictor", str(pred), "--transfer", str(f16),
                 "--out", str(tmp_path / "ck")]) == 0
    capsys.readouterr()
    model, doc = load_checkpoint(tmp_path / "ck")
    assert doc["model"]["preset"] == "magenta-mobile"
    assert count_params(model.predictor) == 2_334_916 and count_params(model.transformer) == 177_718
    images = SHARED / "images"
    styles = sorted((images / "style").iterdir())
    contents = sorted((images / "content").iterdir())
    if not styles or not contents:
        pytest.skip("shared images absent")
    run_pred, run_f16 = _tflite(pred), _tflite(f16)
    report = []
    with torch.no_grad():
        for i, sp in enumerate(styles):
            cp = contents[i % len(contents)]
            s = load_tensor(sp, 256, crop=True)
            c = load_tensor(cp, 384, crop=True)
            b_google = run_pred(style_image=_nhwc(s))
            b_ours = model.predictor(s)
            b_psnr = _psnr(_nhwc(b_ours), b_google, peak=float(b_google.max() - b_google.min()))
            out_google = run_f16(content_image=_nhwc(c), **{"mobilenet_conv/Conv/BiasAdd": _nhwc(b_ours)})
            out_ours = _nhwc(model.transformer(c, b_ours))
            o_psnr = _psnr(out_ours, out_google)
            report.append((sp.name, cp.name, round(b_psnr, 1), round(o_psnr, 1)))
    print(json.dumps(report))
    for name, _, b_psnr, o_psnr in report:
        assert b_psnr >= 40.0, (name, report)
        assert o_psnr >= 40.0, (name, report)


def test_magenta_int8_transfer_and_tensor_reader(tmp_path, magenta_dir):
    from styleport.models.importers import read_tflite_tensors

    q8 = magenta_dir / "style_transfer_quantized_384.tflite"
    w = read_tflite_tensors(q8, ["transformer/contract/conv1/weights",
                                 "style_params/transformer/expand/conv3/conv/StyleNorm/Conv_1/weights"])
    assert all(a.dtype == np.float32 for a in w.values())
    assert w["transformer/contract/conv1/weights"].shape == (8, 9, 9, 3)  # OHWI
    everything = read_tflite_tensors(magenta_dir / "style_transfer_f16_384.tflite")
    f16 = everything["transformer/contract/conv1/weights"]
    assert np.abs(f16 - w["transformer/contract/conv1/weights"]).max() < 0.01  # int8 dequantized ~ f16
    p = run_cli("import", "--from", "magenta-tflite", "--predictor", magenta_dir / "style_predict_quantized_256.tflite",
                "--transfer", q8, "--out", tmp_path / "ck8")
    assert p.returncode == 0, p.stderr
    # files swapped: a clear one-line error, no checkpoint
    p = run_cli("import", "--from", "magenta-tflite", "--predictor", q8,
                "--transfer", magenta_dir / "style_predict_quantized_256.tflite", "--out", tmp_path / "bad")
    assert_one_line_error(p, 2, "not Google's Magenta")
    assert not Path(tmp_path / "bad").exists()
