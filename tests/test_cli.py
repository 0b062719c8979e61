"""`netralitas VERB`: every verb answers --help, delegates to its module, keeps exit codes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import cli

ROOT = Path(__file__).resolve().parent.parent


def test_the_console_script_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["scripts"]["netralitas"] == "cli:main"
    assert "cli" in project["tool"]["setuptools"]["py-modules"]


@pytest.mark.parametrize("verb", sorted(cli.VERBS))
def test_every_verb_has_help(verb: str, capsys) -> None:
    assert cli.main([verb, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:")
    assert cli.VERBS[verb][1] in cli.usage()


def test_train_help_for_a_backend_and_bad_verbs(capsys) -> None:
    assert cli.main(["train", "tfidf", "--help"]) == 0
    assert "--set" in capsys.readouterr().out
    assert cli.main(["train", "nope"]) == 2
    assert "unknown backend 'nope'" in capsys.readouterr().err
    assert cli.main(["frobnicate"]) == 2
    assert "unknown verb 'frobnicate'" in capsys.readouterr().err
    assert cli.main([]) == 2
    assert cli.main(["build", "--no-such-flag"]) == 2


def test_verbs_keep_their_modules_exit_codes(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "none"
    assert cli.main(["validate", str(missing)]) == 3
    assert cli.main(["promote", "--candidate", str(missing), "--current", str(missing)]) == 4
    assert cli.main(["labelstudio", "config", "--out", str(tmp_path / "c.xml")]) == 0
    assert (tmp_path / "c.xml").read_text(encoding="utf-8").startswith("<View>")


def test_predict_through_the_verb_matches_predict_py(tfidf_model_dir: Path) -> None:
    text = "ASN dilarang ikut kampanye. Camat itu hadir di deklarasi paslon."
    args = [text, "--model", str(tfidf_model_dir)]
    via_verb = subprocess.run(
        [sys.executable, "-m", "cli", "predict", *args], capture_output=True, text=True, cwd=ROOT
    )
    direct = subprocess.run(
        [sys.executable, "predict.py", *args], capture_output=True, text=True, cwd=ROOT
    )
    assert via_verb.returncode == direct.returncode == 0
    assert via_verb.stdout == direct.stdout and via_verb.stdout.count('"type":"sentence"') == 2


def test_installed_script_runs_when_present() -> None:
    script = shutil.which("netralitas", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("netralitas script not installed here (pip install -e . creates it)")
    done = subprocess.run([script, "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "labelstudio" in done.stdout
