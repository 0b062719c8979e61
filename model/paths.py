"""Where the project finds things outside its own tree.

`../shared` (the label schema, guideline, seed articles and tokenizer files) sits beside
the checkout in this workplace; `NETRALITAS_SHARED` points elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    """The shared folder: `$NETRALITAS_SHARED`, else `../shared` beside the checkout."""
    env = os.environ.get("NETRALITAS_SHARED")
    return Path(env) if env else REPO_ROOT.parent / "shared"


def cache_dir() -> Path:
    """Cache for derived, re-creatable files (converted encoders): `$NETRALITAS_CACHE`."""
    env = os.environ.get("NETRALITAS_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "netralitas"
