"""The transformer tagger, trained for real on our sentences with a tiny BERT built here.

The encoder (`tiny_encoder` in conftest.py) is a 2-layer, 32-wide BERT with random weights
and IndoBERT's real tokenizer (from `../shared/models/indobert-base-p2-tokenizer`), saved
with `save_pretrained` into a temporary folder: the same code path as a real local encoder,
at a size that trains in a second. Every run goes through
`training.train_transformer.train`/`main` (no mocks) on a subset of the real train split and
the full dev split. Nothing here touches the network: encoders are local folders, and the
whole module runs with HF_HUB_OFFLINE=1. It also runs on the CPU even where CUDA is present
(NETRALITAS_DEVICE=cpu), so the bitwise checks do not depend on GPU kernels.

The whole file takes about 10 s on 2 CPU cores.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import write_subset_splits

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from model import calibration  # noqa: E402
from model.artifact import verify_artifact  # noqa: E402
from model.encoders import ENV_VAR, OFFLINE_E5, EncoderError, resolve_encoder  # noqa: E402
from model.registry import load_predictor  # noqa: E402
from model.scorer import label_arrays, tune_thresholds  # noqa: E402
from training.common import load_config, load_dataset  # noqa: E402
from training.train_transformer import (  # noqa: E402
    DEFAULT_CONFIG,
    TrainResult,
    build_model,
    check_config,
    checkpoint_dir,
    config_problems,
    main,
    train,
)

TRAIN_SENTENCES = 200  # a spread-out subset of train keeps the file fast as the data grows
# Tiny-model settings: a high learning rate so a few dozen steps visibly lower the loss.
OVERRIDES = [
    "train.epochs=3",
    "train.batch_size=16",
    "train.lr=2e-3",
    "train.head_lr=1e-2",
    "train.warmup_ratio=0.1",
    "train.patience=5",
    "model.max_length=64",
    "model.freeze_word_embeddings=false",
    "inference.batch_size=32",
]
MISSING_HUB_ID = "netralitas-tests/no-such-model"


class Interrupted(Exception):
    """Raised from a callback to stop a run the way a crash or Ctrl-C would."""


class StopAfterFirstSave(transformers.TrainerCallback):
    """Interrupts training right after the first epoch's checkpoint is written."""

    def on_save(self, args, state, control, **kwargs):
        raise Interrupted


@pytest.fixture(scope="module", autouse=True)
def offline_cpu() -> object:
    """No hub, CPU only, and no encoder preset by the user's environment."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("NETRALITAS_DEVICE", "cpu")
        # Bit-for-bit checks of the PyTorch model; the int8 ONNX runtime: test_onnx.py.
        mp.setenv("NETRALITAS_RUNTIME", "torch")
        mp.delenv(ENV_VAR, raising=False)
        yield


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real sentences: every k-th train sentence (about 200) and all of dev and test."""
    return write_subset_splits(tmp_path_factory.mktemp("splits"), TRAIN_SENTENCES)


@pytest.fixture(scope="module")
def config() -> dict:
    return load_config(DEFAULT_CONFIG, OVERRIDES)


@pytest.fixture(scope="module")
def run_a(tiny_encoder: Path, splits: Path, config: dict, tmp_path_factory) -> TrainResult:
    out = tmp_path_factory.mktemp("models") / "indobert"
    return train(config, splits, out, encoder=str(tiny_encoder))


def eval_texts(splits: Path) -> list[str]:
    data = load_dataset(splits)
    return [r["text"] for s in ("dev", "test") for r in data[s]]


def test_training_loss_falls(run_a: TrainResult) -> None:
    losses = [h["train_loss"] for h in run_a.history]
    assert len(losses) == 3
    assert losses[-1] < losses[0], losses


def test_artifact_verifies_and_round_trips(run_a: TrainResult, splits: Path) -> None:
    manifest = verify_artifact(run_a.out)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "README.md", "meta.json"):
        assert name in manifest["files"]
    predictor = load_predictor(run_a.out)
    assert predictor.name == "indobert"
    texts = eval_texts(splits)
    # Raw backend scores (the Predictor adds the artifact's calibration on top).
    loaded, in_memory = predictor.backend.scores(texts), run_a.backend.scores(texts)
    assert loaded.categories.dtype == np.float64
    assert np.array_equal(loaded.categories, in_memory.categories)
    assert np.array_equal(loaded.stance, in_memory.stance)
    assert np.allclose(loaded.stance.sum(axis=1), 1.0)


def test_meta_names_encoder_and_thresholds_are_the_tuned_ones(
    run_a: TrainResult, splits: Path, tiny_encoder: Path
) -> None:
    meta = json.loads((run_a.out / "meta.json").read_text())
    assert meta["backend"] == "indobert"
    assert meta["encoder"] == str(tiny_encoder)
    assert meta["config"]["encoder"] == str(tiny_encoder)
    assert meta["max_length"] == 64
    dev_texts, dev_cat, _ = label_arrays(load_dataset(splits)["dev"])
    dev_scores = calibration.apply(run_a.backend.scores(dev_texts), meta["calibration"])
    tuned, _how = tune_thresholds(dev_scores.categories, dev_cat)
    assert meta["thresholds"] == tuned
    predictor = load_predictor(run_a.out)
    assert predictor.thresholds.tolist() == list(tuned.values())


def test_model_card_has_yaml_metadata_and_dev_metrics(run_a: TrainResult) -> None:
    yaml = pytest.importorskip("yaml")
    text = (run_a.out / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    header = yaml.safe_load(text.split("---\n")[1])
    assert header["language"] == ["id"]
    assert header["license"] == "mit"
    assert "text-classification" in header["tags"]
    values = {m["name"]: m["value"] for m in header["model-index"][0]["results"][0]["metrics"]}
    dev = run_a.meta["dev_metrics"]
    assert values["category micro-F1"] == pytest.approx(dev["category_micro_f1"], abs=1e-4)
    assert values["stance macro-F1"] == pytest.approx(dev["stance_macro_f1"], abs=1e-4)


def test_backend_restores_input_order(run_a: TrainResult, splits: Path) -> None:
    texts = eval_texts(splits)
    forward = run_a.backend.scores(texts)
    backward = run_a.backend.scores(texts[::-1])
    # Other batch mates mean other padding widths: equal up to float rounding, not bitwise.
    assert np.allclose(backward.categories[::-1], forward.categories, atol=1e-5)
    assert np.allclose(backward.stance[::-1], forward.stance, atol=1e-5)
    assert run_a.backend.scores([]).categories.shape == (0, 8)


def test_same_seed_gives_identical_results(
    run_a: TrainResult, tiny_encoder: Path, splits: Path, config: dict, tmp_path: Path
) -> None:
    run_b = train(config, splits, tmp_path / "b", encoder=str(tiny_encoder))
    assert run_b.meta["dev_metrics"] == run_a.meta["dev_metrics"]
    assert run_b.meta["version"] == run_a.meta["version"]
    assert [h["train_loss"] for h in run_b.history] == [h["train_loss"] for h in run_a.history]


def test_resume_after_interruption_matches_uninterrupted_run(
    run_a: TrainResult, tiny_encoder: Path, splits: Path, config: dict, tmp_path: Path
) -> None:
    # A copy of the encoder, deleted before loading: the artifact must not need it.
    encoder = tmp_path / "encoder-copy"
    shutil.copytree(tiny_encoder, encoder)
    out = tmp_path / "c"

    with pytest.raises(Interrupted):
        train(config, splits, out, encoder=str(encoder), callbacks=[StopAfterFirstSave()])
    saved = sorted(p.name for p in checkpoint_dir(out).glob("checkpoint-*"))
    assert len(saved) == 1, saved
    assert not out.exists()

    argv = ["--config", str(DEFAULT_CONFIG), "--data", str(splits), "--out", str(out)]
    argv += ["--encoder", str(encoder), "--resume"]
    for item in OVERRIDES:
        argv += ["--set", item]
    assert main(argv) == 0
    assert not checkpoint_dir(out).exists()
    shutil.rmtree(encoder)

    meta = json.loads((out / "meta.json").read_text())
    assert meta["training"]["resumed"] is True
    assert meta["dev_metrics"] == run_a.meta["dev_metrics"]
    texts = eval_texts(splits)
    resumed = load_predictor(out).backend.scores(texts)
    uninterrupted = run_a.backend.scores(texts)
    assert np.array_equal(resumed.categories, uninterrupted.categories)
    assert np.array_equal(resumed.stance, uninterrupted.stance)


def test_missing_hub_id_fails_fast_with_advice(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(EncoderError) as info:  # HF_HUB_OFFLINE=1: refused without a request
        resolve_encoder(MISSING_HUB_ID)
    message = str(info.value)
    assert MISSING_HUB_ID in message
    assert "--encoder e5-small-offline" in message
    assert ENV_VAR in message and "local folder" in message

    code = main(["--encoder", MISSING_HUB_ID, "--out", str(tmp_path / "never")])
    assert code == 4
    assert "--encoder e5-small-offline" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_encoder_precedence_and_missing_folder(
    monkeypatch: pytest.MonkeyPatch, tiny_encoder: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV_VAR, str(tiny_encoder))
    from_env = resolve_encoder(None)
    assert (from_env.kind, from_env.path) == ("local", str(tiny_encoder.resolve()))
    other = tmp_path / "other-encoder"
    shutil.copytree(tiny_encoder, other)
    assert resolve_encoder(str(other)).path == str(other.resolve())  # argument beats env
    with pytest.raises(EncoderError, match="does not exist"):
        resolve_encoder(str(tmp_path / "nowhere"))


def test_offline_e5_name_goes_to_the_converter(
    monkeypatch: pytest.MonkeyPatch, tiny_encoder: Path
) -> None:
    e5_offline = pytest.importorskip("model.e5_offline")
    assert e5_offline.ENCODER_NAME == OFFLINE_E5
    # The conversion itself is tested in test_e5_offline.py; here only the dispatch.
    monkeypatch.setattr(e5_offline, "ensure_e5_offline", lambda *a, **k: tiny_encoder)
    source = resolve_encoder(OFFLINE_E5)
    assert (source.name, source.kind, source.path) == (OFFLINE_E5, "offline", str(tiny_encoder))
    assert source.base_model == "intfloat/multilingual-e5-small"


def test_freezing_word_embeddings(tiny_encoder: Path, config: dict) -> None:
    frozen = {**config, "model": {**config["model"], "freeze_word_embeddings": True}}
    model, _ = build_model(resolve_encoder(str(tiny_encoder)), frozen)
    assert not model.encoder.get_input_embeddings().weight.requires_grad
    assert model.stance_head.weight.requires_grad


def test_bad_config_and_empty_split_are_refused(
    tiny_encoder: Path, splits: Path, config: dict, tmp_path: Path
) -> None:
    broken = json.loads(json.dumps(config))
    broken["train"]["epochs"] = 0
    broken["train"]["warmup"] = 0.1
    del broken["loss"]["pos_weight_cap"]
    problems = config_problems(broken)
    assert any("epochs" in p and "at least 1" in p for p in problems)
    assert any("unknown key [train] warmup" in p for p in problems)
    assert any("missing key [loss] pos_weight_cap" in p for p in problems)
    with pytest.raises(ValueError, match="epochs"):
        check_config(broken)
    assert main(["--set", "train.mixed_precision=fp8", "--out", str(tmp_path / "x")]) == 2

    empty = tmp_path / "empty-train"
    empty.mkdir()
    for name in ("train", "dev", "test"):
        src = "" if name == "train" else (splits / f"{name}.jsonl").read_text(encoding="utf-8")
        (empty / f"{name}.jsonl").write_text(src, encoding="utf-8")
    argv = ["--data", str(empty), "--encoder", str(tiny_encoder), "--out", str(tmp_path / "y")]
    assert main(argv) == 3


def test_tagger_is_a_pretrained_model_whose_forward_returns_the_joint_loss(
    tiny_encoder: Path, config: dict
) -> None:
    weights = {"pos_weight": [3.0] * 8, "stance_class_weight": [1.0, 2.0, 0.5]}
    model, tokenizer = build_model(resolve_encoder(str(tiny_encoder)), config, weights)
    assert isinstance(model, transformers.PreTrainedModel)
    model.eval()
    batch = tokenizer(
        ["Camat ikut kampanye.", "ASN wajib netral."],
        padding=True,
        return_tensors="pt",
        return_token_type_ids=False,
    )
    y_cat = torch.zeros(2, 8)
    y_cat[0, 0] = 1.0
    y_stance = torch.tensor([1, 0])
    out = model(**batch, labels_cat=y_cat, labels_stance=y_stance)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        out.category_logits, y_cat, pos_weight=torch.full((8,), 3.0)
    )
    ce = torch.nn.functional.cross_entropy(
        out.stance_logits, y_stance, weight=torch.tensor([1.0, 2.0, 0.5])
    )
    assert out.loss.item() == pytest.approx((bce + ce).item(), rel=1e-6)
    assert model(**batch).loss is None  # no labels: inference, logits only


def test_mixed_precision_only_on_cuda() -> None:
    from training.train_transformer import precision_flags

    assert precision_flags(torch.device("cpu"), "auto") == {"bf16": False, "fp16": False}
    assert precision_flags(torch.device("cpu"), "fp16") == {"bf16": False, "fp16": False}


def test_retune_rewrites_the_model_card_and_keeps_the_weights(
    run_a: TrainResult, splits: Path, tmp_path: Path
) -> None:
    from training.runner import retune

    out = tmp_path / "retuned"
    retune(run_a.out, "per_category", splits, out)
    old = json.loads((run_a.out / "meta.json").read_text())
    new = json.loads((out / "meta.json").read_text())
    assert new["retuned_from"] == old["version"] != new["version"]
    assert new["encoder"] == old["encoder"] and new["training"] == old["training"]
    card = (out / "README.md").read_text()
    assert f"version `{new['version']}`" in card and old["version"] not in card
    assert (out / "model.safetensors").read_bytes() == (
        run_a.out / "model.safetensors"
    ).read_bytes()
    texts = eval_texts(splits)[:20]
    a, b = (
        load_predictor(run_a.out).backend.scores(texts),
        load_predictor(out).backend.scores(texts),
    )
    assert np.array_equal(a.categories, b.categories) and np.array_equal(a.stance, b.stance)
