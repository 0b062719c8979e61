"""The labelled dataset: deterministic build, validator rejections, `datasets` loading."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from data.build import Paths, assign_stories, build, real_records
from data.holdout import norm_sentence, norm_url
from data.records import SPLITS, DataError, dumps_jsonl, read_jsonl
from data.stories import cluster_stories, duplicate_positions
from data.validate import load_splits, validate_splits
from model.schema import CATEGORIES, STANCES

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture()
def data_copy(tmp_path: Path) -> Path:
    """A private copy of the dataset sources and splits (tests edit it)."""
    dst = tmp_path / "data"
    for part in ("raw", "labels", "authored", "splits"):
        if (DATA / part).exists():
            shutil.copytree(DATA / part, dst / part)
    shutil.copy(DATA / "README.md", dst / "README.md")
    return dst


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_rebuild_is_byte_identical_to_the_committed_files(data_copy: Path) -> None:
    before = _files(data_copy / "splits")
    card = (data_copy / "README.md").read_bytes()
    build(Paths(data_copy))
    assert _files(data_copy / "splits") == before
    assert (data_copy / "README.md").read_bytes() == card
    build(Paths(data_copy))
    assert _files(data_copy / "splits") == before


def test_committed_splits_validate_and_hold_only_real_sentences_in_eval() -> None:
    splits = load_splits(DATA / "splits")
    assert validate_splits(splits) == []
    for split in ("dev", "test"):
        assert splits[split], f"{split} is empty"
        assert {r["source"] for r in splits[split]} <= {"seed", "corpus"}
    articles = [{r["article_id"] for r in splits[s]} for s in SPLITS]
    assert not (articles[0] & articles[1] or articles[0] & articles[2] or articles[1] & articles[2])


def test_authored_sentences_reach_the_label_targets() -> None:
    """The issue's coverage targets: >= 40 sentences per category, >= 60 per stance."""
    records = [r for s in load_splits(DATA / "splits").values() for r in s]
    for c in CATEGORIES:
        assert sum(c in r["categories"] for r in records) >= 40, c
    for st in STANCES:
        assert sum(r["stance"] == st for r in records) >= 60, st


def test_splits_load_with_hugging_face_datasets() -> None:
    datasets = pytest.importorskip("datasets")
    files = {s: str(DATA / "splits" / f"{s}.jsonl") for s in SPLITS}
    ds = datasets.load_dataset("json", data_files=files)
    assert set(ds) == set(SPLITS)
    assert ds["test"].num_rows == len(read_jsonl(DATA / "splits" / "test.jsonl"))
    row = ds["test"][0]
    assert set(row) >= {"id", "article_id", "position", "text", "categories", "stance"}
    assert isinstance(row["categories"], list)


def test_existing_assignment_is_kept_and_new_stories_are_assigned_deterministically() -> None:
    real = [
        {"story_id": f"s{i}", "categories": ["kampanye"] if i % 2 else [], "stance": "pro"}
        for i in range(6)
        for _ in range(3)
    ]
    fixed = {"s0": "test", "s1": "train"}
    first = assign_stories(real, fixed, seed=5)
    assert first == assign_stories(real, fixed, seed=5)
    assert first["s0"] == "test" and first["s1"] == "train"
    assert set(first.values()) == set(SPLITS)


def test_assignment_meets_the_split_minimums_when_the_data_allows(monkeypatch) -> None:
    """Dev and test get the kontra and category counts the targets ask, stories kept whole."""
    monkeypatch.setattr(
        "data.build.SPLIT_MINIMUMS",
        {
            "test": {"sentences": 40, "kontra": 10, "category": 3},
            "dev": {"sentences": 30, "category": 2},
        },
    )
    real = []
    for i in range(60):
        cat = CATEGORIES[i % len(CATEGORIES)]
        for j in range(4):
            real.append(
                {
                    "story_id": f"s{i:02d}",
                    "categories": [cat] if j == 0 else [],
                    "stance": "kontra" if j == 1 and i % 3 == 0 else "netral",
                }
            )
    assignment = assign_stories(real, {}, seed=13)
    for split, need in (("test", 3), ("dev", 2)):
        chosen = [r for r in real if assignment[r["story_id"]] == split]
        for c in CATEGORIES:
            assert sum(c in r["categories"] for r in chosen) >= need, (split, c)
    test = [r for r in real if assignment[r["story_id"]] == "test"]
    assert len(test) >= 40 and sum(r["stance"] == "kontra" for r in test) >= 10


def test_stories_join_republished_copies_and_drop_repeated_sentences() -> None:
    shared = (
        "Bawaslu Kabupaten Garut menemukan seorang camat hadir dalam deklarasi "
        "pasangan calon bupati nomor urut dua."
    )
    sentences = {
        "c001_a": ["Camat hadiri deklarasi paslon", shared, "Kasus ini diteruskan ke KASN."],
        "c002_b": ["Camat di Garut dilaporkan", shared, "Ia membantah tuduhan itu."],
        "c003_c": ["Kapolda ingatkan anggota netral", "Polisi dilarang berpolitik praktis."],
        "c004_d": ["Lurah dukung calon wali kota", "Lurah itu sudah dipanggil."],
    }
    story = cluster_stories(sentences, manual={"c004_d": "lurah-x", "c003_c": "lurah-x"})
    assert story == {"c001_a": "c001_a", "c002_b": "c001_a", "c003_c": "c003_c", "c004_d": "c003_c"}
    assert duplicate_positions(sentences, story) == {"c002_b": {1}}


def _holdout_file(tmp_path: Path, urls: list[str], sentences: list[str]) -> Path:
    path = tmp_path / "holdout.json"
    sha = lambda x: hashlib.sha256(x.encode()).hexdigest()  # noqa: E731
    path.write_text(
        json.dumps(
            {
                "url_sha256": [sha(norm_url(u)) for u in urls],
                "sentence_sha256": [sha(norm_sentence(s)) for s in sentences],
            }
        )
    )
    return path


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, check=False
    )


def test_builder_and_validator_refuse_a_holdout_sentence(data_copy: Path, tmp_path: Path) -> None:
    listed = read_jsonl(data_copy / "splits" / "test.jsonl")[2]["text"]
    holdout = _holdout_file(tmp_path, [], [listed.upper() + " !!"])  # normalisation applies
    build_run = _run("data.build", "--data-dir", str(data_copy), "--holdout", str(holdout))
    assert build_run.returncode == 3
    assert "holdout list" in build_run.stderr and listed[:40] in build_run.stderr
    validate_run = _run("data.validate", str(data_copy / "splits"), "--holdout", str(holdout))
    assert validate_run.returncode == 3
    assert "sentence is on the evaluators' holdout list" in validate_run.stderr
    clean = _holdout_file(tmp_path, [], ["kalimat lain yang tidak ada di data kita sama sekali"])
    assert _run("data.validate", str(data_copy / "splits"), "--holdout", str(clean)).returncode == 0


def test_builder_and_validator_refuse_a_holdout_address(data_copy: Path, tmp_path: Path) -> None:
    meta_path = data_copy / "raw" / "articles.jsonl"
    meta = read_jsonl(meta_path)
    meta[1]["url"] = "https://www.contoh-berita.id/amp/2024/asn-netral?page=2"
    meta_path.write_text(dumps_jsonl(meta), encoding="utf-8")
    holdout = _holdout_file(tmp_path, ["http://m.contoh-berita.id/2024/ASN-Netral"], [])
    build_run = _run("data.build", "--data-dir", str(data_copy), "--holdout", str(holdout))
    assert build_run.returncode == 3
    assert f"article {meta[1]['id']}: address" in build_run.stderr
    validate_run = _run("data.validate", str(data_copy / "splits"), "--holdout", str(holdout))
    assert validate_run.returncode == 3
    assert "address https://www.contoh-berita.id" in validate_run.stderr


def test_missing_holdout_list_is_an_error_not_a_pass(data_copy: Path, tmp_path: Path) -> None:
    result = _run(
        "data.validate", str(data_copy / "splits"), "--holdout", str(tmp_path / "no.json")
    )
    assert result.returncode == 3
    assert "holdout list not found" in result.stderr


def test_build_refuses_a_label_whose_text_no_longer_matches(data_copy: Path) -> None:
    path = data_copy / "labels" / "seed.jsonl"
    records = read_jsonl(path)
    records[3]["text"] = records[3]["text"] + " (diubah)"
    path.write_text(dumps_jsonl(records), encoding="utf-8")
    with pytest.raises(DataError, match="changed under the splitter"):
        real_records(Paths(data_copy))


def _break(data_copy: Path, split: str, edit) -> subprocess.CompletedProcess:
    path = data_copy / "splits" / f"{split}.jsonl"
    records = read_jsonl(path)
    edit(records)
    path.write_text(dumps_jsonl(records), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "data.validate", str(data_copy / "splits")],
        capture_output=True,
        text=True,
        check=False,
    )


def _set(i: int, key: str, value):
    def edit(records: list[dict]) -> None:
        records[i][key] = value

    return edit


def _drop_stance(records: list[dict]) -> None:
    del records[0]["stance"]


def _duplicate_first(records: list[dict]) -> None:
    records.append(dict(records[0], position=999))


def _authored_into_test(records: list[dict]) -> None:
    records.append(
        dict(records[0], id="authored-x-000", article_id="authored-x", source="authored")
    )


def _leak_article(records: list[dict]) -> None:
    records.append(
        dict(
            records[0],
            id="leak-000",
            article_id=read_jsonl(DATA / "splits" / "train.jsonl")[0]["article_id"],
        )
    )


def _leak_story(records: list[dict]) -> None:
    records[0]["story_id"] = read_jsonl(DATA / "splits" / "train.jsonl")[0]["story_id"]


@pytest.mark.parametrize(
    ("split", "edit", "message"),
    [
        ("train", _set(0, "categories", ["kampanye", "korupsi"]), "unknown categories"),
        ("dev", _drop_stance, "missing stance"),
        ("dev", _set(1, "stance", "setuju"), "unknown stance"),
        ("test", _duplicate_first, "duplicate id"),
        ("train", _set(2, "text", "   "), "empty text"),
        ("test", _authored_into_test, "authored sentence in test"),
        ("test", _leak_article, "leaks across splits"),
        ("test", _leak_story, "story"),
        ("dev", _set(0, "source", "scraped"), "source must be one of"),
    ],
    ids=[
        "unknown-label",
        "missing-stance",
        "unknown-stance",
        "duplicate-id",
        "empty-text",
        "authored-in-test",
        "article-leak",
        "story-leak",
        "bad-source",
    ],
)
def test_validator_rejects_broken_copies(data_copy: Path, split: str, edit, message: str) -> None:
    result = _break(data_copy, split, edit)
    assert result.returncode == 3
    assert message in result.stderr
    assert "FAILED" in result.stderr


def test_validator_passes_the_clean_copy_and_reports_unreadable_files(data_copy: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "data.validate", str(data_copy / "splits")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    (data_copy / "splits" / "dev.jsonl").write_bytes(b'{"id": "x"}\n{not json\n')
    bad = subprocess.run(
        [sys.executable, "-m", "data.validate", str(data_copy / "splits")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 3
    assert "dev.jsonl:2: not valid JSON" in bad.stderr


def test_stats_file_matches_the_split_files() -> None:
    stats = json.loads((DATA / "splits" / "stats.json").read_text())
    for split in SPLITS:
        records = read_jsonl(DATA / "splits" / f"{split}.jsonl")
        assert stats[split]["sentences"] == len(records)
        assert stats[split]["stance"] == {
            s: sum(r["stance"] == s for r in records) for s in STANCES
        }


def test_jsonl_round_trips_unicode_line_separators(tmp_path: Path) -> None:
    records = [{"id": "x", "text": "Baris\u2028satu\u2029dua"}, {"id": "y", "text": "dua"}]
    path = tmp_path / "r.jsonl"
    path.write_text(dumps_jsonl(records), encoding="utf-8")
    assert read_jsonl(path) == records


def _collected(tmp_path: Path, urls: list[str]) -> Path:
    """A collector's batch: one short real-looking article per address."""
    text = (
        "Bawaslu Periksa Kepala Desa\n"
        "Bawaslu memeriksa seorang kepala desa yang diduga ikut kampanye pasangan calon. "
        "Kepala desa itu hadir di panggung kampanye pada Senin pagi."
    )
    path = tmp_path / "collected.jsonl"
    rows = [
        {
            "url": u,
            "outlet": "Contoh",
            "date": "2024-10",
            "region": None,
            "title": "T",
            "text": text,
            "cut": False,
        }
        for u in urls
    ]
    path.write_text(dumps_jsonl(rows), encoding="utf-8")
    return path


def test_ingest_check_writes_nothing_and_ingest_adds_new_addresses(
    data_copy: Path, tmp_path: Path
) -> None:
    known = next(m["url"] for m in read_jsonl(data_copy / "raw" / "articles.jsonl") if "url" in m)
    batch = _collected(tmp_path, ["https://contoh.id/a/1", known, "https://contoh.id/a/2"])
    before = _files(data_copy / "raw") | _files(data_copy / "raw" / "corpus")
    checked = _run("data.ingest", str(batch), "--data-dir", str(data_copy), "--check")
    assert checked.returncode == 0, checked.stderr
    would = json.loads(checked.stdout)
    assert would["would_add"] == 2  # the known address is skipped
    assert _files(data_copy / "raw") | _files(data_copy / "raw" / "corpus") == before
    added = json.loads(_run("data.ingest", str(batch), "--data-dir", str(data_copy)).stdout)
    assert added["ids"] == would["ids"]
    meta = read_jsonl(data_copy / "raw" / "articles.jsonl")
    assert [m["id"] for m in meta[-2:]] == added["ids"]
    assert meta[-1]["url"] == "https://contoh.id/a/2"
    assert (
        (data_copy / "raw" / "corpus" / f"{added['ids'][0]}.txt")
        .read_text()
        .startswith("Bawaslu Periksa")
    )


def test_ingest_refuses_a_holdout_address_and_writes_nothing(
    data_copy: Path, tmp_path: Path
) -> None:
    batch = _collected(tmp_path, ["https://contoh.id/a/1", "https://www.contoh.id/amp/a/9"])
    holdout = _holdout_file(tmp_path, ["http://m.contoh.id/A/9"], [])
    before = _files(data_copy / "raw")
    for extra in ([], ["--check"]):
        run = _run(
            "data.ingest",
            str(batch),
            "--data-dir",
            str(data_copy),
            "--holdout",
            str(holdout),
            *extra,
        )
        assert run.returncode == 3
        assert "collected.jsonl:2" in run.stderr and "nothing written" in run.stderr
    assert _files(data_copy / "raw") == before


def test_ingest_refuses_a_blocked_spam_domain_and_writes_nothing(
    data_copy: Path, tmp_path: Path
) -> None:
    batch = _collected(tmp_path, ["https://contoh.id/a/1", "https://www.verdauen.com/berita/2"])
    before = _files(data_copy / "raw")
    for extra in ([], ["--check"]):
        run = _run("data.ingest", str(batch), "--data-dir", str(data_copy), *extra)
        assert run.returncode == 3
        assert "collected.jsonl:2" in run.stderr and "verdauen.com is a blocked" in run.stderr
        assert "collected.jsonl:1" not in run.stderr
    assert _files(data_copy / "raw") == before


def test_new_to_train_keeps_dev_and_test_exactly(data_copy: Path) -> None:
    """A story missing from the stored assignment is new; `new_to` sends it to train and
    leaves every dev and test file line as it was."""
    splits = data_copy / "splits"
    test_before = (splits / "test.jsonl").read_bytes()
    dev = read_jsonl(splits / "dev.jsonl")
    story = dev[0]["story_id"]
    stored = json.loads((splits / "assignment.json").read_text())
    del stored["stories"][story]
    (splits / "assignment.json").write_text(json.dumps(stored), encoding="utf-8")
    build(Paths(data_copy), new_to="train")
    assert (splits / "test.jsonl").read_bytes() == test_before
    assert read_jsonl(splits / "dev.jsonl") == [r for r in dev if r["story_id"] != story]
    moved = [r for r in read_jsonl(splits / "train.jsonl") if r["story_id"] == story]
    assert len(moved) == sum(r["story_id"] == story for r in dev) > 0
    assert json.loads((splits / "assignment.json").read_text())["stories"][story] == "train"
    with pytest.raises(DataError, match="new-to"):
        build(Paths(data_copy), new_to="train", resplit=True)
