from PIL import Image

from conftest import assert_one_line_error, run_cli


def test_help_and_version():
    p = run_cli("--help")
    assert p.returncode == 0 and "gatys" in p.stdout
    p = run_cli("--version")
    assert p.returncode == 0 and p.stdout.startswith("styleport ")


def test_every_verb_has_help():
    from styleport.cli import build_parser
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices
    assert verbs
    for name in verbs:
        p = run_cli(name, "--help")
        assert p.returncode == 0, name
        assert "--" in p.stdout, name  # states its flags


def test_gatys_cli_writes_image(tmp_path, sample_images):
    out = tmp_path / "out.png"
    p = run_cli("gatys", "--content", sample_images / "content.png", "--style", sample_images / "swirl.png",
                "-o", out, "--steps", "3", "--size", "48", "--loss-net", "random", "--no-progress")
    assert p.returncode == 0, p.stderr
    assert "random-feature" in p.stderr  # announced, never silent
    assert Image.open(out).size == (48, 48)


def test_gatys_bad_inputs_exit_2(tmp_path, sample_images):
    base = ["--steps", "1", "--size", "32", "--loss-net", "random", "-o", tmp_path / "o.png"]
    p = run_cli("gatys", "--content", tmp_path / "missing.png", "--style", sample_images / "swirl.png", *base)
    assert_one_line_error(p, 2, "not found")
    txt = tmp_path / "notes.png"
    txt.write_text("hello, not an image")
    p = run_cli("gatys", "--content", txt, "--style", sample_images / "swirl.png", *base)
    assert_one_line_error(p, 2, "not a readable image")
    p = run_cli("gatys", "--content", sample_images / "content.png", "--style", sample_images / "swirl.png",
                "--steps", "1", "--size", "32", "-o", tmp_path / "o.png", "--vgg-weights", tmp_path / "none.pth")
    assert_one_line_error(p, 2, "not found")


def test_unknown_verb_and_flag_exit_2():
    assert run_cli("paint").returncode == 2
    assert run_cli("gatys", "--bogus").returncode == 2
