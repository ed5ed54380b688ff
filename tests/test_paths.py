"""No absolute path of the machine that ran in committed results and reports (issue 20):
RESULTS.md and README highlights rendered from benchmarks/results/*.json, the JSON a suite writes, and
a bundle's quality report print paths relative to the repository (``../shared/data/...``)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from styleport.paths import display_path, scrub

ROOT = Path(__file__).resolve().parents[1]
# "/word/" not preceded by a word, dot, colon or slash: an absolute POSIX path (URLs and a/b excluded)
ABSOLUTE = re.compile(r"(?<![\w.:/~-])/(?:work|home|tmp|Users|root|var|mnt|opt|srv|private)/")


def _suites():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.path.insert(0, str(ROOT / "benchmarks" / "suites"))
    import results_md
    from suites import common
    return results_md, common


def test_display_path_and_scrub(tmp_path):
    repo = tmp_path / "co" / "repo"
    assert display_path(tmp_path / "co" / "shared" / "data" / "images", repo) == "../shared/data/images"
    assert display_path(repo / "benchmarks" / "x.py", repo) == "benchmarks/x.py"
    assert display_path("rel/images", repo) == "rel/images"
    assert not ABSOLUTE.search(display_path("/tmp/elsewhere/pics/content", repo))
    text = "python /work/wt-et/benchmarks/suites/q.py; content: 4 images of /work/shared/data/images/content"
    assert scrub(text, repo) == "python benchmarks/suites/q.py; content: 4 images of ../shared/data/images/content"
    assert scrub("onnx/predictor.fp32.onnx, https://x.org/benchmarks/a", repo) == \
        "onnx/predictor.fp32.onnx, https://x.org/benchmarks/a"
    home = Path.home().as_posix()
    if home != "/":
        assert scrub(f"not installed in {home}/.cache/styleport/web", repo) == \
            "not installed in ~/.cache/styleport/web"


def test_results_md_and_highlights_print_no_absolute_path():
    results_md, _ = _suites()
    folder = ROOT / "benchmarks" / "results"
    text = results_md.render(folder) + "\n".join(results_md.highlights(folder))
    assert not ABSOLUTE.search(text), ABSOLUTE.search(text) and text[ABSOLUTE.search(text).start() - 80:][:200]


def test_suite_json_holds_no_absolute_path(tmp_path, monkeypatch):
    _, common = _suites()
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", [str(ROOT / "benchmarks" / "suites" / "x.py"), "--data",
                                      str(common.IMAGES)])
    p = common.write("x", {"held_out": f"content: 4 images of {common.IMAGES / 'content'}"})
    doc = json.loads(p.read_text())
    assert not ABSOLUTE.search(p.read_text()), doc
    assert doc["command"].endswith("benchmarks/suites/x.py --data ../shared/data/images")
    assert doc["held_out"] == "content: 4 images of ../shared/data/images/content"


def test_quality_report_names_held_out_folders_relatively(tmp_path, monkeypatch):
    from styleport.quantization.report import held_out
    from styleport.samples import content_scene, style_pattern
    for what in ("content", "style"):
        (tmp_path / "data" / what).mkdir(parents=True)
    content_scene(32).save(tmp_path / "data" / "content" / "a.png")
    style_pattern("swirl", 32).save(tmp_path / "data" / "style" / "b.png")
    monkeypatch.chdir(tmp_path)
    _, _, desc = held_out({"eval_content": str(tmp_path / "data" / "content"),
                           "eval_style": str(tmp_path / "data" / "style")}, (32, 32), 32)
    assert desc == "content: 1 images of data/content; style: 1 images of data/style"
    assert str(tmp_path) not in desc


def test_committed_results_json_hold_no_machine_path():
    """The stored results themselves (not only what is rendered from them): commands and notes name
    benchmarks/... and ../shared/data/..., never the folder of the machine that ran them. (/opt/ is
    allowed here: the ARM sysroot's own site-packages path inside the guest.)"""
    host = re.compile(r"(?<![\w.:/~-])/(?:work|home|tmp|Users|root|var|mnt|srv|private)/")
    for f in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        m = host.search(f.read_text())
        assert m is None, (f.name, f.read_text()[m.start() - 60:m.start() + 80])


def test_heavy_first_names_existing_test_files():
    """conftest.HEAVY_FIRST orders the files for `make test`'s workers; a renamed file must not drop out."""
    from conftest import HEAVY_FIRST, ROOT
    assert len(set(HEAVY_FIRST)) == len(HEAVY_FIRST)
    for name in HEAVY_FIRST:
        assert (ROOT / "tests" / name).is_file(), name


def test_tiny_bundle_is_built_once_by_processes_sharing_its_folder(tmp_path, monkeypatch):
    """tiny.tiny_bundle under conftest's shared_tmp: two callers at once (two pytest-xdist workers)
    build it once; the second waits on the lock and reuses the first one's bundle."""
    import threading
    import time

    import tiny
    from styleport import manifest as mf
    built = []

    def fake_build(folder, bundle, *args):
        built.append(threading.get_ident())
        time.sleep(0.3)   # the other caller arrives while this one builds
        bundle.mkdir()
        (bundle / mf.MANIFEST).write_text("{}")
        return bundle
    monkeypatch.setattr(tiny, "_build_tiny_bundle", fake_build)
    got = []
    callers = [threading.Thread(target=lambda: got.append(tiny.tiny_bundle(tmp_path / "rt"))) for _ in range(2)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    assert len(built) == 1 and got == [tmp_path / "rt" / "bundle"] * 2
