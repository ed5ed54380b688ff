"""Named network configurations. ``build(config)`` is the one way a model is made from a config.

| preset         | kind      | what                                                              |
|----------------|-----------|-------------------------------------------------------------------|
| johnson        | single    | Johnson et al. 2016, one style; instance (or batch) norm          |
| dumoulin       | multi     | same body, conditional instance norm, N styles in a table         |
| ghiasi         | arbitrary | Inception-v3 (to Mixed_6e) predictor + CIN transformer (13 CIN)   |
| magenta-mobile | arbitrary | Magenta's mobile release: MobileNetV2 predictor, transformer x0.25 |

``width`` scales every channel count (tiny models for tests); full size is width 1.
"""

from __future__ import annotations

from torch import nn

from styleport.errors import BadInput

PRESETS = ("johnson", "dumoulin", "ghiasi", "magenta-mobile")

# Input sizes the export boundary uses by default (Magenta's release: 256² style, 384² content).
DEFAULT_SIZES = {"content": 384, "style": 256}


def default_config(preset: str, **overrides) -> dict:
    if preset not in PRESETS:
        raise BadInput(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    cfg = {"preset": preset, "width": 1.0}
    if preset == "johnson":
        cfg.update(norm="instance", output="sigmoid")
    elif preset == "dumoulin":
        cfg.update(num_styles=1, output="sigmoid")
    elif preset == "ghiasi":
        cfg.update(contract_norm="batch")
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg


def build(config: dict) -> nn.Module:
    """Make the network a config describes (random init). Raises BadInput on a bad config."""
    preset = config.get("preset")
    if preset not in PRESETS:
        raise BadInput(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    width = float(config.get("width", 1.0))
    if not 0.0 < width <= 4.0:
        raise BadInput(f"width must lie in (0, 4], got {width}")
    try:
        if preset == "johnson":
            from styleport.models.transformer import JohnsonNet
            return JohnsonNet(width, config.get("norm", "instance"), config.get("output", "sigmoid"))
        if preset == "dumoulin":
            from styleport.models.transformer import DumoulinNet
            return DumoulinNet(int(config.get("num_styles", 1)), width, config.get("output", "sigmoid"))
        if preset == "ghiasi":
            from styleport.models.arbitrary import ghiasi
            return ghiasi(width, config.get("contract_norm", "batch"))
        from styleport.models.magenta import magenta_mobile
        return magenta_mobile(width)
    except ValueError as e:
        raise BadInput(f"bad {preset} config: {e}") from None


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
