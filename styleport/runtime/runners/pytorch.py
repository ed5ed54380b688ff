"""PyTorch reference runner over a styleport checkpoint folder (the only runtime module that imports
torch). ``part`` picks the network: "transformer" (default) or "predictor" for arbitrary presets;
single-style (johnson) and multi-style (dumoulin) networks are their own transformer.

I/O follows the export contract, NCHW float32 in [0,1]:
  johnson      content_image [1,3,H,W] -> stylized_image
  dumoulin     content_image [1,3,H,W], style_weights [1,N] -> stylized_image
  arbitrary    transformer: content_image, style_bottleneck [1,100,1,1] -> stylized_image
               predictor:   style_image [1,3,h,w] -> style_bottleneck [1,100,1,1]
"""

from __future__ import annotations

from styleport.runtime.runners.deps import first_line, need, version
from styleport.runtime.runners.base import Runner, RuntimeFailed, TensorSpec

IMG = [1, 3, "H", "W"]


class TorchRunner(Runner):
    name = runtime = "torch"
    formats = ("pytorch",)
    imports = ("torch",)

    def _open(self):
        self.torch = need("torch")
        from styleport.models.checkpoint import load_checkpoint
        if self.threads:
            self.torch.set_num_threads(int(self.threads))
        model, self.doc = load_checkpoint(self.path)
        part = self.options.get("part", "transformer")
        kind = getattr(model, "kind", "single")
        if kind == "arbitrary":
            if part not in ("transformer", "predictor"):
                raise RuntimeFailed(f"torch: no part {part!r} in an arbitrary-style network")
            self.module = getattr(model, part)
        else:
            if part == "predictor":
                raise RuntimeFailed(f"torch: a {kind}-style network has no style predictor")
            self.module = model
        self.module.eval()
        self.part, self.kind = part, kind
        if part == "predictor":
            self._inputs = [TensorSpec("style_image", list(IMG), layout="NCHW", range=[0, 1])]
            self._outputs = [TensorSpec("style_bottleneck", [1, 100, 1, 1], layout="NCHW")]
        else:
            self._inputs = [TensorSpec("content_image", list(IMG), layout="NCHW", range=[0, 1])]
            if kind == "arbitrary":
                self._inputs.append(TensorSpec("style_bottleneck", [1, 100, 1, 1], layout="NCHW"))
            elif kind == "multi":
                self._inputs.append(TensorSpec("style_weights", [1, int(model.num_styles)]))
            self._outputs = [TensorSpec("stylized_image", list(IMG), layout="NCHW", range=[0, 1])]

    def _close(self):
        self.module = None

    def input_specs(self):
        return list(self._inputs)

    def output_specs(self):
        return list(self._outputs)

    def run(self, feeds):
        torch = self.torch
        try:
            args = [torch.from_numpy(feeds[s.name]) for s in self._inputs]
            with torch.inference_mode():
                out = self.module(*args)
            return {self._outputs[0].name: out.numpy()}
        except KeyError as e:
            raise RuntimeFailed(f"torch: no feed for input {e}") from None
        except Exception as e:  # noqa: BLE001
            raise RuntimeFailed(f"torch failed to run {self.part}: {first_line(e)}") from None

    def precision(self):
        return "fp32"

    def versions(self):
        return {"torch": version("torch")}
