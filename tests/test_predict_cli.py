"""`predict.py` as monitoring tools run it: a subprocess, for every input form and failure.

Each test spawns `predict.py` with the session's real TF-IDF model. Input errors are
refused before the model is loaded, so those runs are cheap; the rest pay a cold start.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from data.validate import DEFAULT_SPLITS_DIR, load_splits
from model.inference import Engine, parse_input
from model.paths import REPO_ROOT
from model.registry import load_predictor
from model.schema import CATEGORIES, STANCES
from model.sentences import split_sentences

PREDICT = REPO_ROOT / "predict.py"
SEED = REPO_ROOT / "data" / "raw" / "000_4c7507842b4eeaeb.txt"  # has "Baca Juga:", "Editor :"
SENTENCE_KEYS = {
    "type",
    "id",
    "sentence_index",
    "start",
    "end",
    "text",
    "categories",
    "category_scores",
    "stance",
    "stance_probs",
    "model",
}
ARTICLE_KEYS = {
    "type",
    "id",
    "line",
    "sentences",
    "categories",
    "evidence",
    "stance_counts",
    "kontra_sentences",
    "flag",
    "model",
}
TIMEOUT = 60


def run_cli(
    model: Path | str | None, *args: str, stdin: bytes = b""
) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(PREDICT)]
    if model is not None:
        cmd += ["--model", str(model)]
    return subprocess.run(
        cmd + list(args), input=stdin, capture_output=True, timeout=TIMEOUT, cwd=REPO_ROOT
    )


def records(proc: subprocess.CompletedProcess) -> list[dict]:
    assert proc.returncode == 0, proc.stderr.decode()
    return [json.loads(line) for line in proc.stdout.decode("utf-8").splitlines()]


def check_sentence_record(r: dict, meta: dict, source_text: str) -> None:
    """Keys, types, decisions and offsets of one sentence record."""
    assert set(r) == SENTENCE_KEYS
    assert r["type"] == "sentence"
    assert source_text[r["start"] : r["end"]] == r["text"]
    assert list(r["category_scores"]) == list(CATEGORIES)
    assert list(r["stance_probs"]) == list(STANCES)
    chosen = [c for c in CATEGORIES if r["category_scores"][c] >= meta["thresholds"][c]]
    assert r["categories"] == chosen
    assert r["stance"] == max(STANCES, key=lambda s: r["stance_probs"][s])
    assert r["model"] == {"name": meta["backend"], "version": meta["version"]}


@pytest.fixture(scope="module")
def meta(tfidf_model_dir: Path) -> dict:
    return load_predictor(tfidf_model_dir).meta


# --------------------------------------------------------------------------- input forms


def test_text_argument(tfidf_model_dir: Path, meta: dict) -> None:
    text = "ASN dilarang menjadi anggota partai politik. Camat hadir di deklarasi paslon."
    out = records(run_cli(tfidf_model_dir, text))
    assert [r["sentence_index"] for r in out] == [0, 1]
    assert {r["id"] for r in out} == {"arg"}
    for r in out:
        check_sentence_record(r, meta, text)


def test_seed_article_from_file_and_stdin(tfidf_model_dir: Path, meta: dict) -> None:
    text = SEED.read_text(encoding="utf-8")
    expected = [(s.start, s.end, s.text) for s in split_sentences(text)]
    from_file = records(run_cli(tfidf_model_dir, "--file", str(SEED)))
    from_stdin = records(run_cli(tfidf_model_dir, stdin=SEED.read_bytes()))
    for out, source in ((from_file, str(SEED)), (from_stdin, "stdin")):
        assert [(r["start"], r["end"], r["text"]) for r in out] == expected
        assert [r["sentence_index"] for r in out] == list(range(len(expected)))
        assert {r["id"] for r in out} == {source}
        for r in out:
            check_sentence_record(r, meta, text)
            assert not r["text"].lower().startswith(("baca juga", "editor"))
            assert "(red)" not in r["text"]
    boilerplate = [text.index("Baca Juga:"), text.index("Editor :")]
    assert not any(r["start"] <= at < r["end"] for r in from_file for at in boilerplate)
    # stdin and file give the same numbers
    assert [r["category_scores"] for r in from_file] == [r["category_scores"] for r in from_stdin]


def test_jsonl_file_with_ids(tfidf_model_dir: Path, meta: dict, tmp_path: Path) -> None:
    article = SEED.read_text(encoding="utf-8")
    lines = [
        {"id": "a-1", "text": "ASN dilarang kampanye. Bupati meminta ASN netral."},
        {"text": "Camat hadir di deklarasi pasangan calon."},
        {"id": 7, "text": article, "extra": "ignored"},
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n")
    out = records(run_cli(tfidf_model_dir, "--file", str(path)))
    by_id: dict = {}
    for r in out:
        by_id.setdefault(r["id"], []).append(r)
    assert list(by_id) == ["a-1", f"{path}:2", 7]
    for doc in lines:
        got = by_id[doc.get("id", f"{path}:2")]
        assert [r["sentence_index"] for r in got] == list(range(len(got)))
        for r in got:
            check_sentence_record(r, meta, doc["text"])
    assert len(by_id["a-1"]) == 2
    assert len(by_id[7]) == len(split_sentences(article))


def test_article_summaries_follow_sentence_records(tfidf_model_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    docs = [{"id": p.stem, "text": p.read_text()} for p in sorted(SEED.parent.glob("*.txt"))]
    docs.append({"id": "only-boilerplate", "text": "Baca Juga: ASN netral\nEditor : Redaksi"})
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
    out = records(run_cli(tfidf_model_dir, "--file", str(path), "--article"))
    summaries = [r for r in out if r["type"] == "article"]
    assert [s["id"] for s in summaries] == [d["id"] for d in docs]
    flagged = 0
    for n, summary in enumerate(summaries, 1):
        assert set(summary) == ARTICLE_KEYS
        sentences = [r for r in out if r["type"] == "sentence" and r["id"] == summary["id"]]
        assert summary["line"] == n
        assert summary["sentences"] == len(sentences)
        found = [c for c in CATEGORIES if any(c in r["categories"] for r in sentences)]
        assert summary["categories"] == found == list(summary["evidence"])
        for cat, ev in summary["evidence"].items():
            best = max(sentences, key=lambda r, cat=cat: r["category_scores"][cat])
            assert ev["sentence_index"] == best["sentence_index"]
            assert ev["score"] == best["category_scores"][cat]
            assert ev["text"] == best["text"] and (ev["start"], ev["end"]) == (
                best["start"],
                best["end"],
            )
        kontra = [r["sentence_index"] for r in sentences if r["stance"] == "kontra"]
        assert summary["kontra_sentences"] == kontra
        assert summary["stance_counts"] == {
            s: sum(r["stance"] == s for r in sentences) for s in STANCES
        }
        assert summary["flag"] == bool(found or kontra)
        flagged += summary["flag"]
    assert summaries[-1]["sentences"] == 0 and summaries[-1]["flag"] is False
    assert flagged, "no seed article was flagged: the flag logic was not exercised"
    # Each summary follows its own sentences.
    order = [(r["type"], r["id"]) for r in out]
    for s in summaries:
        i = order.index(("article", s["id"]))
        assert all(t == "sentence" and rid == s["id"] for t, rid in order[i - s["sentences"] : i])


def test_table_format(tfidf_model_dir: Path) -> None:
    proc = run_cli(tfidf_model_dir, "--format", "table", "--article", "--file", str(SEED))
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.decode("utf-8").splitlines()
    assert lines[0].split()[:4] == ["ID", "#", "SPAN", "STANCE"]
    assert len(lines) == 1 + len(split_sentences(SEED.read_text())) + 1
    assert "ARTICLE" in lines[-1]
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[1])


def test_parallel_workers_give_identical_output(tfidf_model_dir: Path, tmp_path: Path) -> None:
    splits = load_splits(DEFAULT_SPLITS_DIR)
    texts = [r["text"] for s in ("dev", "test") for r in splits[s]]
    path = tmp_path / "big.jsonl"
    path.write_text(
        "".join(json.dumps({"id": i, "text": texts[i % len(texts)]}) + "\n" for i in range(5000))
    )
    one = run_cli(tfidf_model_dir, "--file", str(path), "--jobs", "1")
    two = run_cli(tfidf_model_dir, "--file", str(path), "--jobs", "2")
    assert one.returncode == two.returncode == 0
    assert one.stdout == two.stdout
    assert len(one.stdout.splitlines()) == 5000


def test_batched_engine_gives_the_predictors_scores(tfidf_model_dir: Path) -> None:
    predictor = load_predictor(tfidf_model_dir)
    engine = Engine(predictor, batch_sentences=7)
    splits = load_splits(DEFAULT_SPLITS_DIR)
    texts = [r["text"] for s in ("train", "dev", "test") for r in splits[s]]
    docs = parse_input("\n".join(json.dumps({"text": t}) for t in texts), "t")
    results = list(engine.run(docs))
    got = np.concatenate([r.category_scores for r in results])
    want = predictor.scores([s.text for d in docs for s in split_sentences(d.text)])
    np.testing.assert_array_equal(got, want.categories)
    np.testing.assert_array_equal(np.concatenate([r.stance_probs for r in results]), want.stance)


def test_tfidf_path_never_imports_torch(tfidf_model_dir: Path) -> None:
    code = (
        "import io, sys, predict\n"
        "out = io.BytesIO()\n"
        f"code = predict.main(['--model', {str(tfidf_model_dir)!r}, '--article', "
        "'ASN dilarang kampanye.'], stdout=out)\n"
        "assert code == 0 and out.getvalue().count(b'\\n') == 2, (code, out.getvalue())\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=TIMEOUT, cwd=REPO_ROOT
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().strip() == "[]"


def test_closed_stdout_ends_quietly(tfidf_model_dir: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(PREDICT), "--model", str(tfidf_model_dir), "--jobs", "1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    text = "".join(f'{{"id": {i}, "text": "ASN dilarang kampanye."}}\n' for i in range(20000))
    proc.stdin.write(text.encode())
    proc.stdin.close()
    assert json.loads(proc.stdout.readline())["id"] == 0
    proc.stdout.close()
    proc.wait(timeout=TIMEOUT)
    assert b"Traceback" not in proc.stderr.read()


# --------------------------------------------------------------------------- streaming


class Stream:
    """A `predict.py --stream` process with line-by-line reads that cannot hang the test."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(PREDICT), "--stream", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO_ROOT,
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def answer(self) -> list[dict]:
        """Records up to and including the next article or error record."""
        out = []
        while True:
            line = self.lines.get(timeout=TIMEOUT)
            assert line is not None, self.proc.stderr.read().decode()
            out.append(json.loads(line))
            if out[-1]["type"] in ("article", "error"):
                return out

    def close(self) -> tuple[int, str]:
        self.proc.stdin.close()
        code = self.proc.wait(timeout=TIMEOUT)
        assert self.lines.get(timeout=TIMEOUT) is None, "records after the last answer"
        return code, self.proc.stderr.read().decode()


def test_stream_answers_line_by_line(tfidf_model_dir: Path, meta: dict) -> None:
    s = Stream("--model", str(tfidf_model_dir), "--max-line-bytes", "2000")
    first = {"id": "q1", "text": "ASN dilarang kampanye. Bupati minta ASN netral."}
    s.send((json.dumps(first) + "\n").encode())
    got = s.answer()  # answered before the next line is written: no batching wait
    assert [r["type"] for r in got] == ["sentence", "sentence", "article"]
    for r in got[:2]:
        check_sentence_record(r, meta, first["text"])
    assert got[-1]["id"] == "q1" and got[-1]["line"] == 1 and got[-1]["sentences"] == 2

    s.send(b'{"text": "Camat hadir di deklarasi paslon."}\n')
    got = s.answer()
    assert got[0]["id"] == "stdin:2" and got[-1]["line"] == 2

    bad = [
        (b"this is not json\n", "not valid JSON"),
        (b'{"id": "x"}\n', 'no "text" field'),
        (b'{"text": "caf\xe9"}\n', "not valid UTF-8"),
        (b'{"text": "a\x00b"}\n', "binary"),
        (b"[1, 2]\n", "expected a JSON object"),
        (b'{"text": "' + b"a" * 5000 + b'"}\n', "over the limit"),
    ]
    for n, (line, message) in enumerate(bad, 3):
        s.send(line)
        (err,) = s.answer()
        assert err["type"] == "error" and err["line"] == n and message in err["error"], err

    # An over-long line arriving in pieces is skipped without being held whole.
    s.send(b'{"text": "' + b"b" * 3000)
    s.send(b"b" * 3000 + b'"}\n')
    (err,) = s.answer()
    assert err["type"] == "error" and err["line"] == 9 and "over the limit" in err["error"]

    s.send(b"\n")  # blank: skipped, no answer
    s.send(b'{"id": "after", "text": "Pj Bupati mengingatkan netralitas ASN."}\n')
    got = s.answer()
    assert got[-1]["type"] == "article" and got[-1]["id"] == "after" and got[-1]["line"] == 11

    # Several lines at once are answered in order (scored together).
    s.send(b"".join(b'{"id": %d, "text": "ASN netral."}\n' % i for i in range(5)))
    assert [s.answer()[-1]["id"] for _ in range(5)] == list(range(5))
    code, stderr = s.close()
    assert code == 0
    assert "line 3: not valid JSON" in stderr and "line 8: over the limit" in stderr


def test_stream_with_bad_model_exits_4(tmp_path: Path) -> None:
    s = Stream("--model", str(tmp_path / "nope"))
    code, stderr = s.close()
    assert code == 4 and "model folder not found" in stderr


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("data", "args", "message"),
    [
        (b"", (), "empty input"),
        (b"  \n\t\n", (), "empty input"),
        (b"Bupati meminta ASN netral \xff\xfe dalam pilkada.", (), "not valid UTF-8"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), (), "binary data"),
        (b'{"id": 1, "text": "ok"}\n{"id": 2, text}\n', (), "line 2: not valid JSON"),
        (b'{"id": 1, "text": "ok"}\n{"id": 2}\n', (), 'line 2: JSON object has no "text"'),
        (b'{"id": 1, "text": 5}\n', (), '"text" must be a string'),
        (b"plain words", ("--input-format", "jsonl"), "line 1: not valid JSON"),
    ],
)
def test_bad_input_exits_3(data: bytes, args: tuple, message: str, tmp_path: Path) -> None:
    # The model is never loaded for bad input: a missing folder must not matter.
    via_stdin = run_cli(tmp_path / "no-model", *args, stdin=data)
    path = tmp_path / "input.bin"
    path.write_bytes(data)
    via_file = run_cli(tmp_path / "no-model", *args, "--file", str(path))
    for proc in (via_stdin, via_file):
        assert proc.returncode == 3, proc.stderr.decode()
        assert message in proc.stderr.decode()
        assert proc.stdout == b""


def test_ten_megabyte_line_exits_3(tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    path.write_bytes(b"ASN netral. " * 900_000)  # ~10 MB, one line
    proc = run_cli(tmp_path / "no-model", "--file", str(path))
    assert proc.returncode == 3
    assert "line 1 is 10800000 bytes, over the limit of 1000000" in proc.stderr.decode()


def test_unreadable_file_exits_3(tmp_path: Path) -> None:
    proc = run_cli(None, "--file", str(tmp_path / "missing.txt"))
    assert proc.returncode == 3 and "cannot read" in proc.stderr.decode()


@pytest.mark.parametrize(
    "args",
    [
        ("--format", "xml", "teks"),
        ("teks", "--file", "x.txt"),
        ("--stream", "teks"),
        ("--batch-size", "0", "teks"),
        ("--no-such-flag",),
    ],
)
def test_usage_errors_exit_2(args: tuple) -> None:
    proc = run_cli(None, *args)
    assert proc.returncode == 2
    assert b"usage:" in proc.stderr and proc.stdout == b""


# --------------------------------------------------------------------------- bad model


def test_unknown_model_name_exits_4() -> None:
    proc = run_cli("no-such-backend", "ASN netral.")
    assert proc.returncode == 4
    assert "unknown model 'no-such-backend'" in proc.stderr.decode() and proc.stdout == b""


def test_tampered_model_folder_exits_4(tfidf_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "tampered"
    shutil.copytree(tfidf_model_dir, folder)
    weights = folder / "tfidf.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    proc = run_cli(folder, "ASN netral.")
    assert proc.returncode == 4
    assert "tfidf.safetensors does not match its SHA-256" in proc.stderr.decode()
    assert proc.stdout == b""


# --------------------------------------------------------------------------- trust: pins, pickle


def manifest_sha256(folder: Path) -> str:
    return hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()


def swapped_copy(src: Path, dst: Path) -> Path:
    """A copy with other weights and a manifest rewritten to match, as an attacker (or a
    careless deploy) would leave it: the manifest check alone cannot tell."""
    from safetensors.numpy import load_file, save_file

    from model.fsutil import sha256_file

    shutil.copytree(src, dst)
    weights = dst / "tfidf.safetensors"
    arrays = load_file(str(weights))
    arrays["categories.intercept"] = arrays["categories.intercept"] + 9.0  # flag (nearly) all
    save_file(arrays, str(weights))
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["files"]["tfidf.safetensors"] = sha256_file(weights)
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return dst


def test_pins_refuse_a_swapped_folder_that_passes_the_manifest(
    tfidf_model_dir: Path, meta: dict, tmp_path: Path
) -> None:
    pin = manifest_sha256(tfidf_model_dir)
    swapped = swapped_copy(tfidf_model_dir, tmp_path / "swapped")
    # The manifest check passes: the swapped model loads and scores otherwise.
    original = records(run_cli(tfidf_model_dir, "Cuaca cerah hari ini."))[0]
    loose = records(run_cli(swapped, "Cuaca cerah hari ini."))[0]
    assert all(
        loose["category_scores"][c] > original["category_scores"][c] + 0.1 for c in CATEGORIES
    )
    # The same version id (meta.json was not touched), so only the hash pin catches it.
    same_version = run_cli(swapped, "--expect-version", meta["version"], "Cuaca cerah.")
    assert same_version.returncode == 0
    proc = run_cli(swapped, "--expect-sha256", pin, "Cuaca cerah hari ini.")
    assert proc.returncode == 4 and proc.stdout == b""
    assert f"but {pin} was pinned" in proc.stderr.decode()
    stream = Stream("--model", str(swapped), "--expect-sha256", pin)
    code, err = stream.close()
    assert code == 4 and "was pinned" in err


def test_right_pins_pass_and_wrong_ones_exit_4(
    tfidf_model_dir: Path, meta: dict, tmp_path: Path
) -> None:
    pin, version = manifest_sha256(tfidf_model_dir), meta["version"]
    text = "ASN dilarang kampanye. Camat hadir di deklarasi paslon."
    plain = run_cli(tfidf_model_dir, text)
    pinned = run_cli(
        tfidf_model_dir, "--expect-sha256", pin.upper(), "--expect-version", version, text
    )
    assert plain.returncode == pinned.returncode == 0 and pinned.stdout == plain.stdout
    wrong_version = run_cli(tfidf_model_dir, "--expect-version", "0123456789ab", text)
    assert wrong_version.returncode == 4 and wrong_version.stdout == b""
    assert f"model version '{version}', but '0123456789ab' was pinned" in (
        wrong_version.stderr.decode()
    )
    wrong_hash = run_cli(tfidf_model_dir, "--expect-sha256", "0" * 64, text)
    assert wrong_hash.returncode == 4 and "was pinned" in wrong_hash.stderr.decode()
    # A byte changed in the weights: the manifest refuses it, pinned or not.
    tampered = tmp_path / "tampered"
    shutil.copytree(tfidf_model_dir, tampered)
    blob = bytearray((tampered / "tfidf.safetensors").read_bytes())
    blob[-1] ^= 0x01
    (tampered / "tfidf.safetensors").write_bytes(bytes(blob))
    proc = run_cli(tampered, "--expect-sha256", pin, "--expect-version", version, text)
    assert proc.returncode == 4 and "does not match its SHA-256" in proc.stderr.decode()
    # Not a SHA-256 at all: a usage error, before anything is read.
    bad = run_cli(tfidf_model_dir, "--expect-sha256", "abc", text)
    assert bad.returncode == 2 and b"64 hex digits" in bad.stderr


def test_an_old_pickled_model_exits_4_asking_to_retrain(
    tfidf_model_dir: Path, tmp_path: Path
) -> None:
    from model.artifact import read_meta, save_artifact

    marker = tmp_path / "pickle-ran"

    class Evil:
        def __reduce__(self):
            return (Path.mkdir, (marker,))

    def write(target: Path) -> None:
        (target / "model.joblib").write_bytes(pickle.dumps(Evil()))

    folder = save_artifact(tmp_path / "old", write, read_meta(tfidf_model_dir))
    proc = run_cli(folder, "ASN netral.")
    assert proc.returncode == 4 and proc.stdout == b""
    err = proc.stderr.decode()
    assert "joblib pickle" in err and "python -m training.train_tfidf" in err
    assert not marker.exists()


# Runs predict.py as `python predict.py` would, recording every unpickling: the audit event
# `pickle.find_class` (raised by the C and the Python unpickler whenever a pickle names a
# class or function, which any code-running pickle must) and calls of the Python-level
# entry points; then proves the recorder works by unpickling once itself.
UNPICKLE_PROBE = """
import json, pathlib, pickle, runpy, sys
events = []
sys.addaudithook(lambda event, args: events.append(event) if event.startswith("pickle") else None)
for name in ("load", "loads"):
    def spy(*args, _real=getattr(pickle, name), _name=name, **kwargs):
        events.append("pickle." + _name)
        return _real(*args, **kwargs)
    setattr(pickle, name, spy)
sys.argv = [sys.argv[1], *sys.argv[2:]]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    code = exc.code
heavy = ("sklearn", "joblib", "scipy", "torch", "transformers")
report = {"code": code, "events": list(events), "modules": [m for m in heavy if m in sys.modules]}
before = len(events)
pickle.loads(pickle.dumps(pathlib.PurePosixPath("x")))
report["recorder_works"] = len(events) > before
print(json.dumps(report), file=sys.stderr)
"""


def test_predicting_with_tfidf_never_unpickles_nor_imports_scikit_learn(
    tfidf_model_dir: Path,
) -> None:
    text = "ASN dilarang kampanye. Camat hadir di deklarasi paslon."
    args = ["--model", str(tfidf_model_dir), "--article", text]
    proc = subprocess.run(
        [sys.executable, "-c", UNPICKLE_PROBE, str(PREDICT), *args],
        capture_output=True,
        timeout=TIMEOUT,
        cwd=REPO_ROOT,
    )
    report = json.loads(proc.stderr.decode().strip().splitlines()[-1])
    assert report["code"] == 0 and len(proc.stdout.splitlines()) == 3
    assert report["recorder_works"]
    assert report["events"] == [], "something was unpickled while predicting"
    assert report["modules"] == []
