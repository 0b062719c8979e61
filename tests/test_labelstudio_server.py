"""The retraining loop against a real Label Studio server on 127.0.0.1.

The server is `label-studio` 1.23 from its own virtual environment (it pins numpy, Django
and more than our environment may take): `$NETRALITAS_LABEL_STUDIO` names the command, else
`.venv-ls/bin/label-studio` in the checkout; `.ci/run` installs it there. Without it these
tests skip and say why. One server per session (about 40 s to start on 2 cores: database
migrations), with a fresh data folder, a user and a legacy API token; the tests talk to it
through `label-studio-sdk` run by that environment's Python (`labelstudio_driver.py`).
Select these tests with `-m labelstudio`, leave them out with `-m "not labelstudio"`.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from retrain_support import (
    DATA,
    SMALL_GRID,
    copy_data,
    gold_result,
    strip_labels,
    train_articles,
    without_labeller,
)

import cli
from data.records import read_jsonl
from model.artifact import read_meta

pytestmark = pytest.mark.labelstudio

ROOT = Path(__file__).resolve().parent.parent
DRIVER = Path(__file__).resolve().parent / "labelstudio_driver.py"
START_TIMEOUT_S = 300


@dataclass(frozen=True)
class Server:
    url: str
    token: str
    python: Path  # the interpreter of Label Studio's environment (has label-studio-sdk)

    def call(self, *args: str):
        """Run one driver command; its printed JSON value."""
        done = subprocess.run(
            [str(self.python), str(DRIVER), self.url, self.token, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        return json.loads(done.stdout.strip().splitlines()[-1])


def label_studio_command() -> Path:
    env = os.environ.get("NETRALITAS_LABEL_STUDIO")
    if env:
        path = Path(env)
        assert path.is_file(), f"NETRALITAS_LABEL_STUDIO={env} does not exist"
        return path
    path = ROOT / ".venv-ls" / "bin" / "label-studio"
    if not path.is_file():
        pytest.skip(
            "Label Studio is not installed: set NETRALITAS_LABEL_STUDIO to the label-studio "
            "command, or `python3 -m venv .venv-ls && .venv-ls/bin/pip install "
            "label-studio==1.23.2` (what .ci/run does)"
        )
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as reply:
            return reply.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory):
    command = label_studio_command()
    home = tmp_path_factory.mktemp("label-studio")
    port, token = _free_port(), secrets.token_hex(20)
    url = f"http://127.0.0.1:{port}"
    args = [
        str(command),
        "start",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-browser",
        "--data-dir",
        str(home / "data"),
        "--username",
        "annotator@example.com",
        "--password",
        secrets.token_urlsafe(16),
        "--user-token",
        token,
        "--enable-legacy-api-token",
    ]
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(home / "data")}
    log = (home / "server.log").open("wb")
    started = time.monotonic()
    proc = subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    try:
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() - started > START_TIMEOUT_S:
                tail = (home / "server.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"Label Studio did not start (exit {proc.poll()}):\n{tail}")
            time.sleep(1)
        print(f"\nLabel Studio up on {url} in {time.monotonic() - started:.1f} s")
        yield Server(url, token, command.parent / "python")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and anything it started, only
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _label_files(data_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((data_dir / "labels").iterdir()) if p.is_file()}


def _project(server: Server, title: str, config: Path, tasks: Path) -> int:
    project = server.call("create-project", title, config)
    imported = server.call("import-tasks", project, tasks)
    count = len(json.loads(tasks.read_text(encoding="utf-8")))
    assert imported == {"tasks": count, "predictions": count}
    return project


def test_export_annotate_import_round_trip(
    label_studio: Server, tfidf_model_dir: Path, tmp_path: Path, capsys
) -> None:
    data_dir = copy_data(tmp_path / "data")
    gold = strip_labels(data_dir, train_articles(3, skip=20))
    tasks, config = tmp_path / "tasks.json", tmp_path / "config.xml"
    assert (
        cli.main(
            [
                "labelstudio",
                "export",
                str(tasks),
                "--data-dir",
                str(data_dir),
                "--model",
                str(tfidf_model_dir),
                "--config-out",
                str(config),
            ]
        )
        == 0
    )
    project = _project(label_studio, "netralitas round trip", config, tasks)
    first = sorted(gold)[0]
    answers = {k: [{"result": gold_result(r)}] for k, r in gold.items()}
    wrong = gold_result({"categories": ["politik_uang"], "stance": "pro"})
    if wrong == answers[first][0]["result"]:
        wrong = gold_result({"categories": [], "stance": "netral"})
    answers[first] = [{"result": wrong}, {"result": gold_result(gold[first])}]
    answer_file = tmp_path / "answers.json"
    answer_file.write_text(json.dumps(answers), encoding="utf-8")
    created = label_studio.call("annotate", project, answer_file)
    assert sorted(created) == sorted(gold) and len(created[first]) == 2
    export = tmp_path / "export.json"
    assert label_studio.call("export", project, export) == len(gold)

    # Two annotators disagree on one sentence: refused whole, nothing written.
    before = _label_files(data_dir)
    assert cli.main(["labelstudio", "import", str(export), "--data-dir", str(data_dir)]) == 3
    assert "conflicting annotations" in capsys.readouterr().err
    assert _label_files(data_dir) == before

    # A reviewer marks the right one as ground truth in Label Studio; export again.
    label_studio.call("ground-truth", created[first][1])
    assert label_studio.call("export", project, export) == len(gold)
    assert cli.main(["labelstudio", "import", str(export), "--data-dir", str(data_dir)]) == 0
    ours = (data_dir / "labels" / "corpus.jsonl").read_text(encoding="utf-8")
    committed = (DATA / "labels" / "corpus.jsonl").read_text(encoding="utf-8")
    assert without_labeller(ours) == without_labeller(committed)
    labellers = {r["id"]: r["labeller"] for r in read_jsonl(data_dir / "labels" / "corpus.jsonl")}
    assert labellers[first] == "labelstudio:ground_truth"
    assert {labellers[k] for k in gold if k != first} == {"labelstudio"}

    assert cli.main(["build", "--data-dir", str(data_dir)]) == 0
    assert cli.main(["validate", str(data_dir / "splits")]) == 0
    for split in ("train", "dev", "test"):
        rebuilt = (data_dir / "splits" / f"{split}.jsonl").read_text(encoding="utf-8")
        stored = (DATA / "splits" / f"{split}.jsonl").read_text(encoding="utf-8")
        assert without_labeller(rebuilt) == without_labeller(stored)


def test_the_whole_retraining_loop(
    label_studio: Server, tfidf_model_dir: Path, tmp_path: Path
) -> None:
    """select -> Label Studio -> import -> build -> validate -> train -> promote or keep."""
    data_dir = copy_data(tmp_path / "data")
    new_articles = train_articles(10, skip=40)  # 119 sentences, 9 stories
    gold = strip_labels(data_dir, new_articles)
    # Freshly ingested, unlabelled articles: the builder refuses to go on without labels.
    assert cli.main(["build", "--data-dir", str(data_dir)]) == 3

    tasks, config = tmp_path / "tasks.json", tmp_path / "config.xml"
    current = str(tfidf_model_dir)
    select = ["select", str(tasks), "--data-dir", str(data_dir), "--model", current]
    assert cli.main([*select, "--n", "25", "--per-story", "3", "--config-out", str(config)]) == 0
    picked = {t["data"]["sentence_id"] for t in json.loads(tasks.read_text(encoding="utf-8"))}
    assert len(picked) == 25 and picked <= set(gold)

    project = _project(label_studio, "netralitas active learning", config, tasks)
    answers = {k: [{"result": gold_result(gold[k])}] for k in picked}
    answer_file = tmp_path / "answers.json"
    answer_file.write_text(json.dumps(answers), encoding="utf-8")
    assert sorted(label_studio.call("annotate", project, answer_file)) == sorted(picked)
    export = tmp_path / "export.json"
    assert label_studio.call("export", project, export) == 25

    imported = ["labelstudio", "import", str(export), "--data-dir", str(data_dir), "--partial"]
    assert cli.main(imported) == 0
    assert cli.main(["build", "--data-dir", str(data_dir)]) == 0
    assert cli.main(["validate", str(data_dir / "splits")]) == 0
    splits = data_dir / "splits"
    train_ids = {r["id"] for r in read_jsonl(splits / "train.jsonl")}
    assert picked <= train_ids and not (set(gold) - picked) & train_ids
    assert (splits / "test.jsonl").read_bytes() == (DATA / "splits" / "test.jsonl").read_bytes()

    candidate = tmp_path / "models" / "tfidf"
    train = ["train", "tfidf", "--data", str(splits), "--out", str(candidate)]
    for item in SMALL_GRID:
        train += ["--set", item]
    assert cli.main(train) == 0
    meta = read_meta(candidate)
    committed_train = read_jsonl(DATA / "splits" / "train.jsonl")
    assert meta["train_sentences"]["real"] == sum(
        r["source"] != "authored" for r in committed_train
    ) - (len(gold) - len(picked))

    report = tmp_path / "promotion"
    promote = ["promote", "--candidate", str(candidate), "--current", current]
    code = cli.main([*promote, "--data", str(splits / "test.jsonl"), "--out", str(report)])
    verdict = json.loads((report / "promotion.json").read_text(encoding="utf-8"))
    assert (code, verdict["verdict"]) in ((0, "promote"), (5, "keep"))
    if verdict["verdict"] == "promote":
        assert all(f["direction"] != "worse" for f in verdict["headline"].values())
    assert verdict["models"]["candidate"]["version"] == meta["version"]
    assert (report / "promotion.md").read_text(encoding="utf-8").startswith("# Promotion gate")
