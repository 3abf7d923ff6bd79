"""The run's loss history, ``RUN/loss.csv``: one row per optimizer step, for the loss curve in report.html.

Rows are appended and flushed as the steps go, so a killed run keeps what it trained; a torn last line
is skipped when read. A resumed run first rewrites the file (atomically) with only the rows up to its
checkpoint, so the steps it repeats are not counted twice. Torch-free: the report reads it without a model.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from dbooth.util.fsutil import atomic_write_text

HISTORY_FILE = "loss.csv"
# loss: what was minimised (instance + prior weight x prior); instance_loss and prior_loss only with prior
COLUMNS = ("step", "loss", "instance_loss", "prior_loss", "lr")


def read_history(path: Path) -> list[dict]:
    """The rows of a history file in step order, one per step (a later row wins), numbers as floats and
    ``step`` as int, None where a value is absent; a missing file is no rows, a torn or foreign line is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    rows: dict[int, dict] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
        values = next(csv.reader([line]), [])
        if len(values) != len(COLUMNS):
            continue
        try:
            row = {k: (float(v) if v else None) for k, v in zip(COLUMNS[1:], values[1:])}
            rows[int(values[0])] = {"step": int(values[0]), **row}
        except ValueError:
            continue
    return [rows[s] for s in sorted(rows)]


def _line(row: dict) -> str:
    out = io.StringIO()
    cells = [row.get(k) for k in COLUMNS]
    csv.writer(out, lineterminator="\n").writerow(["" if v is None else repr(v) if isinstance(v, float) else v
                                                   for v in cells])
    return out.getvalue()


class LossHistory:
    """Appends a row per step to ``RUN/loss.csv``; ``start`` is the step the run continues from (0 when new)."""

    def __init__(self, run_dir: Path, start: int = 0):
        self.path = Path(run_dir) / HISTORY_FILE
        kept = [r for r in read_history(self.path) if r["step"] <= start] if start else []
        atomic_write_text(self.path, ",".join(COLUMNS) + "\n" + "".join(_line(r) for r in kept))
        self._file = self.path.open("a", encoding="utf-8")

    def record(self, step: int, **values: float | None) -> None:
        """One step's figures (``COLUMNS`` past ``step``; others ignored); non-finite ones are left empty."""
        row = {k: (float(v) if v is not None and math.isfinite(v) else None) for k, v in values.items()}
        self._file.write(_line({"step": step, **row}))
        self._file.flush()

    def close(self) -> None:
        self._file.close()
