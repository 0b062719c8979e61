"""Double annotation: packets, agreement (Cohen's kappa) and the merge of two passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sklearn.metrics import cohen_kappa_score

from data.annotate import agreement, merge, read_pass, units, write_packets
from data.build import Paths
from data.holdout import Holdout
from data.records import DataError

TEXT = (
    "Camat Hadiri Deklarasi Paslon\n"
    "Bawaslu menemukan camat itu hadir dalam deklarasi pasangan calon bupati. "
    "Ia dipanggil untuk klarifikasi pada Senin. "
    "ASN dilarang ikut kampanye.\n"
)


@pytest.fixture()
def tiny(tmp_path: Path) -> Paths:
    root = tmp_path / "data"
    (root / "raw" / "corpus").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "raw" / "corpus" / "c001_x.txt").write_text(TEXT, encoding="utf-8")
    meta = {"id": "c001_x", "file": "corpus/c001_x.txt", "url": "https://contoh.id/a"}
    (root / "raw" / "articles.jsonl").write_text(json.dumps(meta) + "\n", encoding="utf-8")
    return Paths(root)


def _holdout(tmp_path: Path) -> Holdout:
    path = tmp_path / "holdout.json"
    path.write_text('{"url_sha256": [], "sentence_sha256": []}')
    return Holdout.load(path)


def _pass(path: Path, rows: list[tuple[str, list[str], str]]) -> Path:
    path.write_text(
        "".join(json.dumps({"key": k, "categories": c, "stance": s}) + "\n" for k, c, s in rows)
    )
    return path


def test_packets_merge_and_agreement(tiny: Paths, tmp_path: Path) -> None:
    holdout = _holdout(tmp_path)
    keys = list(units(tiny, holdout))
    assert keys == [f"c001_x:{i}" for i in range(4)]
    (packet,) = write_packets(tiny, tmp_path / "packets", 1, holdout)
    lines = packet.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("=== ARTICLE c001_x") and lines[2].startswith("[c001_x:1] Bawaslu")
    a = read_pass(
        _pass(
            tmp_path / "a.jsonl",
            [
                (keys[0], ["kampanye"], "kontra"),
                (keys[1], ["kampanye"], "kontra"),
                (keys[2], [], "netral"),
                (keys[3], ["kampanye"], "pro"),
            ],
        )
    )
    b = read_pass(
        _pass(
            tmp_path / "b.jsonl",
            [
                (keys[0], ["kampanye"], "kontra"),
                (keys[1], ["kampanye"], "kontra"),
                (keys[2], [], "kontra"),
                (keys[3], ["kampanye"], "pro"),
            ],
        )
    )
    stats = agreement(a, b)
    assert stats["stance_kappa"] == pytest.approx(
        cohen_kappa_score(["kontra", "kontra", "netral", "pro"], ["kontra"] * 3 + ["pro"])
    )
    assert stats["categories"]["kampanye"]["kappa"] == 1.0 and stats["exact_match"] == 0.75
    with pytest.raises(DataError, match="no adjudication settles it"):
        merge(tiny, a, b, {}, holdout)
    settled = {keys[2]: {"categories": [], "stance": "netral"}}
    (records,) = merge(tiny, a, b, settled, holdout).values()
    assert [r["labeller"] for r in records] == ["double:agreed"] * 2 + [
        "double:adjudicated",
        "double:agreed",
    ]
    assert records[2]["stance"] == "netral" and records[0]["source"] == "corpus"
    skipped = write_packets(tiny, tmp_path / "again", 1, holdout, skip=set(keys[:3]))
    assert "[c001_x:3]" in skipped[0].read_text() and "[c001_x:0]" not in skipped[0].read_text()


def test_a_pass_with_an_unknown_label_is_refused(tmp_path: Path) -> None:
    bad = _pass(tmp_path / "bad.jsonl", [("c001_x:0", ["korupsi"], "pro")])
    with pytest.raises(DataError, match="bad categories"):
        read_pass(bad)
