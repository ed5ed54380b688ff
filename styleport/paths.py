"""Paths as reports print them: never the absolute path of the machine that ran (issue 20).

Results and reports are committed and shared, so ``/work/shared/data/images`` becomes
``../shared/data/images`` (relative to the repository: styleport's source checkout), a path under
the current folder becomes relative to it, and any other absolute path keeps only its last two
parts after ``.../``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def display_path(path, repo: Path | None = None) -> str:
    """``path`` as a report prints it (see the module docstring); relative paths stay as given."""
    p = Path(os.fspath(path))
    if not p.is_absolute():
        return p.as_posix()
    p = Path(os.path.abspath(p))
    repo = Path(repo or REPO)
    if p == repo or repo in p.parents:
        return Path(os.path.relpath(p, repo)).as_posix()
    # the working folder before the repo's parent: a clone in /tmp must not show /tmp/x as ../x
    cwd = Path.cwd()
    if cwd != Path(cwd.anchor) and (p == cwd or cwd in p.parents):
        return Path(os.path.relpath(p, cwd)).as_posix()
    if p == repo.parent or repo.parent in p.parents:
        return Path(os.path.relpath(p, repo)).as_posix()
    return ".../" + "/".join(p.parts[-2:])


# an absolute path into a styleport checkout or its ../shared/data, on any machine (/work/wt-et/...);
# not one under ~/ (already scrubbed: ~/.cache/styleport/web stays whole)
_FOREIGN = re.compile(r"(?<![\w./~-])/(?:[^\s/'\"`()]+/)*?(shared/data/|benchmarks/|styleport/|tests/)")


def scrub(text: str, repo: Path | None = None) -> str:
    """``text`` with absolute paths made relative to the repository: ``<repo>/x`` -> ``x``,
    ``<repo's parent>/y`` -> ``../y``, the home folder -> ``~/`` (e.g. the web assets' cache in a
    note), and on any machine ``/.../shared/data/z`` -> ``../shared/data/z``,
    ``/.../benchmarks/z`` -> ``benchmarks/z`` (results recorded in another checkout)."""
    repo = Path(repo or REPO)
    text = text.replace(f"{repo.as_posix()}/", "")
    if repo.parent != Path(repo.anchor):
        text = text.replace(f"{repo.parent.as_posix()}/", "../")
    home = Path.home()
    if home != Path(home.anchor):
        text = re.sub(rf"(?<![\w./-]){re.escape(home.as_posix())}/", "~/", text)
    return _FOREIGN.sub(lambda m: "../shared/data/" if m.group(1) == "shared/data/" else m.group(1), text)
