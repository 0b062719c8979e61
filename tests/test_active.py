"""What to label next: informativeness, the spread over stories, refusals, determinism."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from retrain_support import copy_data, strip_labels, train_articles

from data.active import candidates, main
from data.build import Paths
from data.holdout import _sha, norm_sentence
from data.labelstudio import corpus_units, labelled_keys
from data.uncertainty import informativeness, stance_entropy, threshold_closeness
from model.predictor import Scores
from model.registry import load_predictor

STRIPPED = train_articles(8, skip=10)


@pytest.fixture()
def pool_data(tmp_path: Path) -> tuple[Path, dict[str, dict]]:
    data_dir = copy_data(tmp_path / "data")
    return data_dir, strip_labels(data_dir, STRIPPED)


def test_uncertainty_signals_on_known_values() -> None:
    uniform, sure = [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]
    assert stance_entropy(np.array([uniform, sure])) == pytest.approx([1.0, 0.0], abs=1e-6)
    t = np.array([0.15, 0.5])
    close = threshold_closeness(np.array([[0.15, 0.5], [0.01, 0.9]]), t)
    assert close[0] == pytest.approx([1.0, 1.0])
    # Log-odds distance: 0.01 lies far from a 0.15 threshold, 0.9 far from 0.5.
    assert close[1][0] == pytest.approx(0.01 / 0.99 * 0.85 / 0.15)
    assert close[1][1] == pytest.approx(1 / 9)
    thresholds = np.full(8, 0.5)
    thresholds[1] = 0.15
    cats = np.full((2, 8), 0.01)
    cats[0, 1] = 0.16  # near media_sosial's low threshold
    info = informativeness(Scores(cats, np.array([sure, uniform])), thresholds)
    assert info.closest_category[0] == "media_sosial"
    assert info.closeness[0] == pytest.approx((0.15 / 0.85) / (0.16 / 0.84))
    assert info.value[0] == pytest.approx(0.5 * info.closeness[0])  # a sure stance adds 0
    assert info.value[1] == pytest.approx(0.5 + 0.5 * info.closeness[1])
    assert info.value == pytest.approx(0.5 * info.stance_entropy + 0.5 * info.closeness)


def _run(tmp_path: Path, data_dir: Path, model: Path, *extra: str, name="tasks.json") -> list:
    out = tmp_path / name
    args = [str(out), *extra, "--data-dir", str(data_dir), "--model", str(model)]
    assert main(args) == 0
    return json.loads(out.read_text(encoding="utf-8"))


def test_select_picks_the_most_informative_unlabelled_sentences_spread_over_stories(
    pool_data, tfidf_model_dir: Path, tmp_path: Path
) -> None:
    data_dir, gold = pool_data
    paths = Paths(data_dir)
    tasks = _run(tmp_path, data_dir, tfidf_model_dir, "--n", "12", "--per-story", "2")
    assert len(tasks) == 12
    ids = [t["data"]["sentence_id"] for t in tasks]
    assert set(ids) <= set(gold)  # only sentences without a label
    stories = Counter(t["data"]["story_id"] for t in tasks)
    assert max(stories.values()) <= 2 and len(stories) >= 6
    values = [t["data"]["selection"]["informativeness"] for t in tasks]
    assert values == sorted(values, reverse=True)
    assert [t["data"]["selection"]["rank"] for t in tasks] == list(range(1, 13))
    # The figures are the model's own: recompute them for every pool sentence and check
    # that nothing left out beats the last pick unless its story was full.
    predictor = load_predictor(tfidf_model_dir)
    texts = [r["text"] for r in gold.values()]
    info = informativeness(predictor.scores(texts), predictor.thresholds)
    by_id = dict(zip(gold, info.value, strict=True))
    for task in tasks:
        assert task["data"]["selection"]["informativeness"] == pytest.approx(
            by_id[task["data"]["sentence_id"]], abs=1e-4
        )
        assert task["predictions"][0]["score"] == pytest.approx(
            1 - by_id[task["data"]["sentence_id"]], abs=1e-4
        )
    pool = {
        f"{u.article_id}-{u.position:03d}": u for u in candidates(corpus_units(paths, None), paths)
    }
    assert set(ids) <= set(pool)
    full = {s for s, k in stories.items() if k == 2}
    for sid, unit in pool.items():
        if sid not in ids:
            assert by_id[sid] <= min(values) + 1e-4 or unit.story_id in full
    # Same pool, model and options: the same bytes.
    again = _run(
        tmp_path, data_dir, tfidf_model_dir, "--n", "12", "--per-story", "2", name="b.json"
    )
    assert again == tasks
    assert (tmp_path / "b.json").read_bytes() == (tmp_path / "tasks.json").read_bytes()


def test_one_per_story_spreads_the_batch(pool_data, tfidf_model_dir: Path, tmp_path: Path) -> None:
    data_dir, _ = pool_data
    tasks = _run(tmp_path, data_dir, tfidf_model_dir, "--n", "50", "--per-story", "1")
    stories = [t["data"]["story_id"] for t in tasks]
    assert len(stories) == len(set(stories)) <= len(STRIPPED)


def test_pool_files_jsonl_and_text(pool_data, tfidf_model_dir: Path, tmp_path: Path) -> None:
    data_dir, gold = pool_data
    raw = data_dir / "raw"
    meta = {m["id"]: m for m in map(json.loads, (raw / "articles.jsonl").read_text().splitlines())}
    jsonl = tmp_path / "pool.jsonl"
    jsonl.write_text(
        "".join(
            json.dumps({"id": a, "text": (raw / meta[a]["file"]).read_text(encoding="utf-8")})
            + "\n"
            for a in STRIPPED[:4]
        ),
        encoding="utf-8",
    )
    text = tmp_path / f"{STRIPPED[4]}.txt"
    text.write_text((raw / meta[STRIPPED[4]]["file"]).read_text(encoding="utf-8"), encoding="utf-8")
    tasks = _run(tmp_path, data_dir, tfidf_model_dir, str(jsonl), str(text), "--n", "100")
    picked = {t["data"]["article_id"] for t in tasks}
    assert picked <= set(STRIPPED[:5]) and STRIPPED[4] in picked
    assert {t["data"]["sentence_id"] for t in tasks} <= set(gold)


def test_select_never_offers_labelled_sentences(tmp_path: Path, tfidf_model_dir: Path) -> None:
    data_dir = copy_data(tmp_path / "data")
    out = tmp_path / "tasks.json"
    assert main([str(out), "--data-dir", str(data_dir), "--model", str(tfidf_model_dir)]) == 3
    assert not out.exists()
    assert labelled_keys(Paths(data_dir))  # the corpus is fully labelled: nothing to pick


def test_holdout_sentences_are_refused(
    pool_data, tfidf_model_dir: Path, tmp_path: Path, capsys
) -> None:
    data_dir, gold = pool_data
    pool = tmp_path / "pool.jsonl"
    listed = next(iter(gold.values()))["text"]
    pool.write_text(json.dumps({"id": "x1", "text": f"Judul.\n{listed}"}) + "\n", encoding="utf-8")
    holdout = tmp_path / "holdout.json"
    holdout.write_text(
        json.dumps({"url_sha256": [], "sentence_sha256": [_sha(norm_sentence(listed))]}),
        encoding="utf-8",
    )
    out = tmp_path / "tasks.json"
    args = [str(out), str(pool), "--data-dir", str(data_dir), "--model", str(tfidf_model_dir)]
    assert main([*args, "--holdout", str(holdout)]) == 3
    err = capsys.readouterr().err
    assert "holdout list" in err and "nothing written" in err and not out.exists()


def test_bad_options_and_missing_model(pool_data, tmp_path: Path) -> None:
    data_dir, _ = pool_data
    out = tmp_path / "tasks.json"
    with pytest.raises(SystemExit) as exc:
        main([str(out), "--n", "0", "--data-dir", str(data_dir)])
    assert exc.value.code == 2
    assert main([str(out), "--data-dir", str(data_dir), "--model", str(tmp_path / "none")]) == 4
    assert not out.exists()
