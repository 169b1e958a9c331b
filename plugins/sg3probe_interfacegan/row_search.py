"""Forward selection of the ws rows an attribute lives in (pure Python over an objective)."""
from __future__ import annotations


def forward_rows(objective, candidates: list[int], min_gain: float) -> tuple[list[int], float]:
    """Forward selection of ws rows: from no rows (objective 0), add the candidate that raises
    objective(rows) most while it raises it by at least `min_gain`. Returns (rows, objective);
    ([], 0.0) when no single row gains that much.

    objective: sorted row list -> float (the analyzer's: target move - weight * side effects).
    """
    chosen: list[int] = []
    best = 0.0
    remaining = list(candidates)
    while remaining:
        trials = {row: objective(sorted(chosen + [row])) for row in remaining}
        row = max(trials, key=lambda r: trials[r])
        if not trials[row] >= best + min_gain:  # NaN stops too
            break
        chosen, best = sorted(chosen + [row]), trials[row]
        remaining.remove(row)
    return chosen, best
