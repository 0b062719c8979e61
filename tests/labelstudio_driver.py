"""Drive a running Label Studio through `label-studio-sdk`, for the tests.

Runs with the interpreter of Label Studio's own virtual environment (`.venv-ls`), because
`label-studio` and its SDK pin versions (numpy among them) that our environment must not
take. The tests call it as a subprocess; every command prints one JSON value.

    python labelstudio_driver.py URL TOKEN create-project TITLE CONFIG.xml
    python labelstudio_driver.py URL TOKEN import-tasks PROJECT TASKS.json
    python labelstudio_driver.py URL TOKEN annotate PROJECT ANSWERS.json
    python labelstudio_driver.py URL TOKEN ground-truth ANNOTATION_ID
    python labelstudio_driver.py URL TOKEN export PROJECT OUT.json

ANSWERS.json maps a task's `data.sentence_id` to a list of annotations, each
`{"result": [...], "ground_truth": bool, "was_cancelled": bool}`; the result list is sent as
given, so a test can post labels the project's config does not know.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from label_studio_sdk import LabelStudio


def main(argv: list[str]) -> None:
    url, token, verb, *rest = argv
    ls = LabelStudio(base_url=url, api_key=token, timeout=120)
    if verb == "create-project":
        title, config = rest
        project = ls.projects.create(title=title, label_config=Path(config).read_text())
        print(json.dumps(project.id))
    elif verb == "import-tasks":
        project, tasks = rest
        request = json.loads(Path(tasks).read_text())
        done = ls.projects.import_tasks(id=int(project), request=request)
        print(json.dumps({"tasks": done.task_count, "predictions": done.prediction_count}))
    elif verb == "annotate":
        project, answers_file = rest
        answers = json.loads(Path(answers_file).read_text())
        created: dict[str, list[int]] = {}
        for task in ls.tasks.list(project=int(project), page_size=100):
            for answer in answers.get(task.data.get("sentence_id"), []):
                annotation = ls.annotations.create(
                    id=task.id,
                    result=answer["result"],
                    ground_truth=answer.get("ground_truth", False),
                    was_cancelled=answer.get("was_cancelled", False),
                )
                created.setdefault(task.data["sentence_id"], []).append(annotation.id)
        print(json.dumps(created))
    elif verb == "ground-truth":
        (annotation,) = rest
        ls.annotations.update(id=int(annotation), ground_truth=True)
        print(json.dumps(int(annotation)))
    elif verb == "export":
        project, out = rest
        exported = ls.projects.exports.as_json(int(project))
        Path(out).write_text(json.dumps(exported, ensure_ascii=False), encoding="utf-8")
        print(json.dumps(len(exported)))
    else:
        raise SystemExit(f"unknown verb {verb!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
