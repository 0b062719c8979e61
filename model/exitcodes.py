"""Exit codes shared by every command, so a script can react the same way to all of them.

| code | meaning |
|---|---|
| 0 | success |
| 1 | internal error: a bug (a traceback is printed) |
| 2 | usage: bad flags or config keys (argparse uses 2 as well) |
| 3 | input: data file missing, unreadable, invalid or refused (e.g. test overlaps training) |
| 4 | model: unknown name, missing/incomplete/tampered folder, encoder cannot be loaded |
| 5 | keep: the promotion gate (`python -m eval.promote`) keeps the current model |
"""

OK, INTERNAL, USAGE, INPUT, MODEL, KEEP = 0, 1, 2, 3, 4, 5
