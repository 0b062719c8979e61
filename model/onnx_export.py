"""Export the fine-tuned tagger to ONNX and quantise it to int8 (at save time, with torch).

What is exported: `TaggerModel.forward` itself (encoder, mean pooling, both heads), traced by
the `torch.export`-based exporter (`torch.onnx.export(..., dynamo=True)`, which needs the
`onnxscript` package) with a dynamic batch and sequence length. One thing is left out of the
graph: the word-embedding lookup. The graph takes the word vectors as an input
(`word_vectors`, batch x length x hidden) next to `input_ids` and `attention_mask`, and the
ONNX Runtime backend (`model.onnx_tagger`) gathers them from the weights file it shares with
the torch runtime (`model.packed_weights.WordTable`). That keeps the 250k-row table in the
artifact once, in its exact 4-bit form, instead of a second (int8, lossy) copy inside the
graph; the lookup is a plain gather, so nothing changes numerically.

Why dynamo: the TorchScript exporter (`dynamo=False`) traces transformers' attention-mask
code with Python branches frozen to the example batch; here it produced logits off by 0.5
on a batch with other padding, while the dynamo export matches torch to ~1e-6. Every export
is checked against torch on two batches of other shapes before it is accepted.

Quantisation (`quantize_per_token`): int8 weights per output column and int8 activations
per token, computed at run time, with standard ONNX operators (`MatMulInteger`). Not
`onnxruntime.quantization.quantize_dynamic`, which was tried first: it gives an activation
one scale for all its tokens, so a few outlier tokens (Bondarenko et al. 2021,
"Understanding and overcoming the challenges of efficient transformer quantization") left
the rest a handful of int8 steps, and on the e5 tagger it moved the dev category micro-F1
by 0.023 (56 of 7,888 test category decisions flipped) and made a sentence's scores depend
on its batch mates by up to 0.32 in a logit. Per token: mean logit error 0.20 -> 0.06, a
sentence scores the same alone or in any batch, and it is as fast.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model.onnx_tagger import INPUTS, META_QUANTIZATION, META_WORD_TABLE, OUTPUTS

log = logging.getLogger(__name__)

CHECK_ATOL = 1e-4  # float32 ONNX vs torch logits; the exporter is ~1e-6 on real models
QUANTIZATION = (
    "int8 MatMulInteger: weights symmetric per output column; activations per token at run "
    "time (each row scaled to max |x| = 1, fixed scale 1/127, uint8 zero point 128)"
)


class _GivenVectors(nn.Module):
    """Stands in for the word-embedding module: returns the vectors it was handed."""

    def __init__(self, original: nn.Embedding) -> None:
        super().__init__()
        self.embedding_dim = original.embedding_dim
        self.vectors: torch.Tensor | None = None

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.vectors


class _Exportable(nn.Module):
    """The tagger's own forward, with word vectors as an input instead of a table lookup."""

    def __init__(self, tagger: nn.Module, stand_in: _GivenVectors) -> None:
        super().__init__()
        self.tagger = tagger
        self.stand_in = stand_in

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, word_vectors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.stand_in.vectors = word_vectors
        out = self.tagger(input_ids, attention_mask)
        return out.category_logits, out.stance_logits


def word_table_name(model: nn.Module) -> str:
    """The state-dict name of the encoder's input embedding matrix."""
    weight = model.encoder.get_input_embeddings().weight
    for name, param in model.named_parameters(remove_duplicate=False):
        if param is weight:
            return name
    raise ValueError("the encoder's input embedding matrix is not among the tagger's parameters")


def _example(model: nn.Module, batch: int, length: int, pad_id: int, seed: int):
    """Token ids, a mask with padding in every row but the first, and their word vectors."""
    gen = torch.Generator().manual_seed(seed)
    vocab = model.encoder.get_input_embeddings().num_embeddings
    ids = torch.randint(0, vocab, (batch, length), generator=gen)
    mask = torch.ones(batch, length, dtype=torch.long)
    for row in range(1, batch):
        keep = max(2, length - row * 2)
        ids[row, keep:] = pad_id
        mask[row, keep:] = 0
    return ids, mask


@contextlib.contextmanager
def _quiet():
    """The exporter prints progress and deprecation notes and the quantiser logs advice on
    the root logger for every tensor; a training log needs none of it."""
    sink = io.StringIO()
    disabled = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(disabled)


def export_float(model: nn.Module, path: Path, pad_id: int) -> None:
    """Write the float32 ONNX graph of `model` (a CPU float32 tagger in eval mode)."""
    embedding = model.encoder.get_input_embeddings()
    stand_in = _GivenVectors(embedding)
    wrapper = _Exportable(model, stand_in)
    ids, mask = _example(model, batch=2, length=8, pad_id=pad_id, seed=0)
    batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence")
    shapes = {name: {0: batch, 1: length} for name in INPUTS}
    model.encoder.set_input_embeddings(stand_in)
    attention = getattr(model.encoder.config, "_attn_implementation", None)
    if attention not in (None, "eager") and hasattr(model.encoder, "set_attn_implementation"):
        # Plain matmul-softmax-matmul: the exported SDPA adds NaN guards and transposes to
        # every layer that cost ONNX Runtime time; the check below compares with SDPA torch.
        model.encoder.set_attn_implementation("eager")
    try:
        with torch.no_grad(), _quiet():
            torch.onnx.export(
                wrapper,
                (ids, mask, embedding(ids)),
                str(path),
                dynamo=True,
                input_names=list(INPUTS),
                output_names=list(OUTPUTS),
                dynamic_shapes=shapes,
                external_data=False,
                verbose=False,
            )
    finally:
        model.encoder.set_input_embeddings(embedding)
        if attention not in (None, "eager") and hasattr(model.encoder, "set_attn_implementation"):
            model.encoder.set_attn_implementation(attention)


def check_float(model: nn.Module, path: Path, pad_id: int) -> float:
    """Largest |ONNX - torch| logit over two batches of shapes unlike the example's."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    embedding = model.encoder.get_input_embeddings()
    worst = 0.0
    for batch, length, seed in ((3, 11, 1), (1, 5, 2)):
        ids, mask = _example(model, batch, length, pad_id, seed)
        with torch.no_grad():
            ref = model(ids, mask)
            feeds = {"input_ids": ids, "attention_mask": mask, "word_vectors": embedding(ids)}
        names = {i.name for i in session.get_inputs()}
        got = session.run(list(OUTPUTS), {k: v.numpy() for k, v in feeds.items() if k in names})
        for mine, theirs in zip(got, (ref.category_logits, ref.stance_logits), strict=True):
            worst = max(worst, float(np.abs(mine - theirs.numpy()).max()))
    return worst


def quantize_per_token(proto) -> int:
    """Rewrite every MatMul with a constant float weight into int8 arithmetic, in place;
    returns how many were rewritten.

    Weights: int8, symmetric, one scale per output column. Activations: each row (token) is
    divided by its own max |x| (so it lies in [-1, 1]) and quantised with the fixed scale
    1/127 (uint8, zero point 128); `MatMulInteger` multiplies, and the int32 result is scaled
    back by the column scale and the row's max |x|. Standard ONNX operators only.

    Why per token: dynamic quantisation (`quantize_dynamic`) gives all the values of an
    activation one scale, and a transformer has a few tokens (delimiters, the first token)
    whose activations are one to two orders of magnitude larger than the rest, which leaves
    the ordinary tokens a handful of int8 steps; and since that scale is taken over the whole
    call, a sentence's scores moved with its batch mates (up to 0.32 in a logit). Per token,
    a row's int8 codes depend on that row only.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    weights = {t.name: t for t in graph.initializer}
    opset = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))

    def const(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    floor = const("per_token/floor", np.array(1e-12, dtype=np.float32))
    step = const("per_token/step", np.array(1.0 / 127.0, dtype=np.float32))
    zero = const("per_token/zero_point", np.array(128, dtype=np.uint8))
    axes = const("per_token/axes", np.array([-1], dtype=np.int64))

    def is_target(node) -> bool:
        if node.op_type != "MatMul" or node.input[1] not in weights:
            return False
        w = weights[node.input[1]]
        return w.data_type == TensorProto.FLOAT and len(w.dims) == 2

    nodes, prepared, count = [], set(), 0
    for node in graph.node:
        if not is_target(node):
            nodes.append(node)
            continue
        x, y = node.input[0], node.output[0]
        if x not in prepared:  # once per input: q, k and v share theirs
            prepared.add(x)
            reduce = helper.make_node(
                "ReduceMax",
                [f"{x}/abs", axes] if opset >= 18 else [f"{x}/abs"],
                [f"{x}/max"],
                keepdims=1,
                **({} if opset >= 18 else {"axes": [-1]}),
            )
            nodes += [
                helper.make_node("Abs", [x], [f"{x}/abs"]),
                reduce,
                helper.make_node("Max", [f"{x}/max", floor], [f"{x}/row_scale"]),
                helper.make_node("Div", [x, f"{x}/row_scale"], [f"{x}/rows"]),
                helper.make_node("QuantizeLinear", [f"{x}/rows", step, zero], [f"{x}/u8"]),
            ]
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
        col = np.abs(w).max(axis=0) / np.float32(127.0)
        col = np.where(col > 0, col, np.float32(1.0)).astype(np.float32)
        w8 = np.clip(np.rint(w / col), -127, 127).astype(np.int8)
        w8_name = const(f"{node.name}/w_int8", w8)
        col_name = const(f"{node.name}/w_scale", (col / np.float32(127.0)).astype(np.float32))
        nodes += [
            helper.make_node("MatMulInteger", [f"{x}/u8", w8_name, zero], [f"{y}/i32"]),
            helper.make_node("Cast", [f"{y}/i32"], [f"{y}/f32"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"{y}/f32", col_name], [f"{y}/cols"]),
            helper.make_node("Mul", [f"{y}/cols", f"{x}/row_scale"], [y]),
        ]
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    unused = [t for t in graph.initializer if t.name not in used]
    for t in unused:
        graph.initializer.remove(t)
    return count


def quantize(src: Path, dst: Path, word_table: str) -> None:
    """Per-token int8 version of the float graph `src` into `dst` (`quantize_per_token`),
    with what the reader needs to know in the graph's metadata."""
    import onnx

    proto = onnx.load(str(src))
    count = quantize_per_token(proto)
    if not count:
        raise ValueError(f"{src}: no MatMul with a constant weight to quantise")
    onnx.helper.set_model_props(
        proto, {META_WORD_TABLE: word_table, META_QUANTIZATION: QUANTIZATION}
    )
    onnx.checker.check_model(proto)
    onnx.save(proto, str(dst))


def export_int8(model: nn.Module, target: Path, pad_id: int) -> Path:
    """Export, check and quantise the tagger into `target` (an `.onnx` file).

    Works on a float32 CPU copy when the model lives elsewhere (a GPU, half precision), so
    the caller's model is left as it was; raises if the export does not match torch.
    """
    param = next(model.parameters())
    if param.device.type != "cpu" or param.dtype != torch.float32:
        model = copy.deepcopy(model).to("cpu", torch.float32)
    was_training = model.training
    model.eval()
    try:
        with tempfile.TemporaryDirectory(prefix="netralitas-onnx-") as tmp:
            float_path = Path(tmp) / "float32.onnx"
            export_float(model, float_path, pad_id)
            error = check_float(model, float_path, pad_id)
            if error > CHECK_ATOL:
                raise ValueError(
                    f"the ONNX export differs from torch by {error:.2e} (> {CHECK_ATOL:.0e})"
                )
            log.info("ONNX export matches torch to %.1e; quantising to int8", error)
            quantize(float_path, Path(target), word_table_name(model))
    finally:
        model.train(was_training)
    return Path(target)
