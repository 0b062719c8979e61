"""Pinned models: `model.artifact.check_pins`, as predict.py and `python -m eval` use it.

The manifest catches a corrupted folder; a pin (the model version, or the SHA-256 of
manifest.json) also catches a folder swapped together with a matching manifest.
predict.py's pins are tested through the CLI in tests/test_predict_cli.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from eval.__main__ import main as eval_main
from model.artifact import MANIFEST, ArtifactError, check_pins, manifest_sha256, read_meta


def test_manifest_sha256_is_the_hash_of_the_manifest_file(tfidf_model_dir: Path) -> None:
    want = hashlib.sha256((tfidf_model_dir / MANIFEST).read_bytes()).hexdigest()
    assert manifest_sha256(tfidf_model_dir) == want


def test_check_pins_passes_the_pinned_folder_and_refuses_others(
    tfidf_model_dir: Path, tmp_path: Path
) -> None:
    pin, version = manifest_sha256(tfidf_model_dir), read_meta(tfidf_model_dir)["version"]
    check_pins(tfidf_model_dir)  # nothing pinned: nothing to refuse
    check_pins(tfidf_model_dir, version=version, sha256=pin.upper())
    with pytest.raises(ArtifactError, match=f"but {'0' * 64} was pinned"):
        check_pins(tfidf_model_dir, sha256="0" * 64)
    with pytest.raises(ArtifactError, match=f"model version '{version}', but 'v2' was pinned"):
        check_pins(tfidf_model_dir, version="v2")
    # Same files, one byte of the manifest changed (a re-listed folder): the pin refuses.
    copy = tmp_path / "copy"
    shutil.copytree(tfidf_model_dir, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    (copy / MANIFEST).write_text(json.dumps(manifest, indent=1))
    with pytest.raises(ArtifactError, match="was pinned"):
        check_pins(copy, sha256=pin)
    with pytest.raises(ArtifactError, match=r"no manifest\.json"):
        check_pins(tmp_path, sha256=pin)


def test_eval_refuses_a_model_that_is_not_the_pinned_one(
    tfidf_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "report"
    base = ["--model", str(tfidf_model_dir), "--out", str(out), "--no-timing"]
    assert eval_main([*base, "--expect-sha256", "f" * 64]) == 4
    assert "was pinned" in capsys.readouterr().err and not out.exists()
    assert eval_main([*base, "--expect-version", "000000000000"]) == 4
    assert "was pinned" in capsys.readouterr().err and not out.exists()
    two = [*base, "--model", str(tfidf_model_dir), "--expect-version", "000000000000"]
    assert eval_main(two) == 2
    assert "once per --model" in capsys.readouterr().err


def test_eval_runs_with_the_right_pins(tfidf_model_dir: Path, tmp_path: Path) -> None:
    pin, version = manifest_sha256(tfidf_model_dir), read_meta(tfidf_model_dir)["version"]
    out = tmp_path / "report"
    argv = ["--model", str(tfidf_model_dir), "--out", str(out), "--no-timing"]
    argv += ["--bootstrap", "100", "--expect-sha256", pin, "--expect-version", version]
    assert eval_main(argv) == 0
    assert (out / "metrics.json").is_file()
