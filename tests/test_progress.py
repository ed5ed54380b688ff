"""Progress bars and the step clock (styleport/export/timing.py): bars on a terminal only, never
with --no-progress; exclusive step times that add up."""

import io
import time

from styleport.export import timing


class _Tty(io.StringIO):
    def isatty(self):
        return True


def _bar_output(monkeypatch, stream, enabled):
    monkeypatch.setattr("sys.stderr", stream)
    b = timing.Bar(3, "export", enabled)
    b.note("transformer onnx int8: quantize")
    b.update(1)
    b.tqdm.refresh()
    b.close()
    return stream.getvalue()


def test_bar_shows_on_a_terminal_names_the_step(monkeypatch):
    out = _bar_output(monkeypatch, _Tty(), True)
    assert "export" in out and "transformer onnx int8: quantize" in out and "1/3" in out


def test_bar_absent_in_a_log_and_with_no_progress(monkeypatch):
    assert _bar_output(monkeypatch, io.StringIO(), True) == ""   # CI logs: stderr is not a terminal
    assert _bar_output(monkeypatch, _Tty(), False) == ""         # --no-progress


def test_step_clock_rows_are_exclusive_and_labelled():
    seen = []
    t0 = time.perf_counter()
    with timing.clock(seen.append) as c:
        t1 = time.perf_counter()
        with timing.step("convert", model="transformer", format="onnx", precision="fp32"):
            time.sleep(0.05)
            with timing.step("simplify"):
                time.sleep(0.1)
        inclusive = time.perf_counter() - t1
        with timing.step("score"):
            time.sleep(0.02)
    wall = time.perf_counter() - t0
    rows = {r["step"]: r for r in c.rows}
    assert rows["simplify"]["format"] == "onnx" and rows["simplify"]["precision"] == "fp32"   # inherited
    assert 0.09 <= rows["simplify"]["seconds"] < 1.0
    # convert's own time: its whole span less the nested simplify
    assert abs(rows["convert"]["seconds"] + rows["simplify"]["seconds"] - inclusive) < 0.01
    assert rows["convert"]["seconds"] >= 0.04
    assert abs(c.total() - wall) < 0.1 * wall
    assert seen == ["transformer onnx fp32: convert", "transformer onnx fp32: simplify", "score"]
    s = c.summary(wall)
    assert set(s["by_step"]) == {"convert", "simplify", "score"} and "steps cover" in timing.one_line(s)


def test_step_outside_an_export_is_a_no_op():
    with timing.step("convert"):
        pass
    assert timing.current() is None
