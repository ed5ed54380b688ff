"""One parity check (an artefact in a runtime against a reference), its verdict, and the exit code
of a run of checks. Comparators only compare: the metrics come from styleport.metrics, the
tolerances from styleport.runtime.harness.tolerances.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from styleport.runtime.harness import tolerances as M
from styleport.runtime.harness.adapt import BOTTLENECK, match_outputs
from styleport.runtime.runners.base import RuntimeSkipped


def check_name(model: str, fmt: str, precision: str, runtime: str, variant: str = "") -> str:
    """The name of a check in tables, JSON and JUnit: ``model/format/precision[/variant]@runtime``."""
    return f"{model}/{fmt}/{precision}{'/' + variant if variant else ''}@{runtime}"


@dataclass
class Check:
    name: str
    model: str
    format: str
    precision: str
    runtime: str
    path: str
    reference: str = ""
    status: str = "pass"             # pass / fail / skipped / error
    metrics: dict = field(default_factory=dict)    # output role -> metrics
    tolerance: dict = field(default_factory=dict)
    reasons: list = field(default_factory=list)
    input_size: list | None = None
    emulation: dict | None = None    # --emulate fp16: the emulating runner's headroom report

    @property
    def passed(self) -> bool | None:
        return {"pass": True, "fail": False}.get(self.status)

    def summary(self) -> dict:
        """The contract's parity block: the main output's metrics and pass."""
        main = next(iter(self.metrics.values()), {}) if self.metrics else {}
        return {"max_abs": main.get("max_abs"), "mean_abs": main.get("mean_abs"), "p99_abs": main.get("p99_abs"),
                "psnr_db": main.get("psnr_db"), "ssim": main.get("ssim"), "snr_db": main.get("snr_db"),
                "cosine": main.get("cosine"), "pass": self.passed}

    def to_dict(self) -> dict:
        return {"name": self.name, "model": self.model, "format": self.format, "precision": self.precision,
                "runtime": self.runtime, "path": self.path, "reference": self.reference, "status": self.status,
                "pass": self.passed, "input_size": self.input_size, "tolerance": self.tolerance,
                "metrics": self.metrics, "reasons": self.reasons, **{"parity": self.summary()},
                **({"emulation": self.emulation} if self.emulation is not None else {})}


def judge(check: Check, ref_out: dict, cand_out: dict, rules) -> Check:
    check.tolerance = M.resolve_tolerance(check.model, check.format, check.precision, check.runtime, rules)
    pairs = match_outputs(ref_out, cand_out)
    if not pairs:
        check.status, check.reasons = "fail", ["no output to compare"]
        return check
    ok_all, reasons = True, []
    for rk, ck in pairs:
        kind = "vector" if rk == BOTTLENECK or ref_out[rk].ndim != 4 else "image"
        m = M.compare(ref_out[rk], cand_out[ck], kind)
        check.metrics[rk] = m
        ok, why = M.check(m, check.tolerance)
        ok_all &= ok
        reasons += [f"{rk}: {w}" for w in why]
    check.status, check.reasons = ("pass" if ok_all else "fail"), reasons
    return check


def error_check(check: Check, e: Exception) -> Check:
    check.status = "skipped" if isinstance(e, RuntimeSkipped) else "error"
    check.reasons = [str(e)]
    return check


def exit_code(checks: list[Check], results: list[dict] | None = None) -> int:
    """3 when a runtime failed or nothing could run, else 1 when a check failed, else 0."""
    statuses = [c.status for c in checks] + [r["status"] for r in (results or [])]
    if any(s == "error" for s in statuses):
        return 3
    if any(s == "fail" for s in statuses):
        return 1
    ran = [s for s in statuses if s in ("pass", "ok")]
    if not ran and statuses:
        return 3
    return 0
