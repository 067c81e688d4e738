"""Two validation curves side by side: at equal epochs and at equal training time.

A hybrid and its short-range twin trained on the same split reach a given error after
different numbers of epochs and seconds; whether the hybrid "wins" before convergence
depends on which budget is held equal. This script compares two training histories on
both budgets and finds the epoch from which one stays ahead:

    python benchmarks/compare_curves.py \
        benchmarks/results/real_data_water_50_patience5.json#nacl-water/train-50/hybrid \
        benchmarks/results/real_data_water_50_patience5.json#nacl-water/train-50/short-range \
        [--every 50] [--output comparison.json]

Each curve is either a ``benchmarks/real_data.py`` report and a row key (``FILE#KEY``)
or a trainer's ``log.csv``. Printed (and written as JSON, atomically, with
``--output``):

* at every ``--every``-th common epoch and the last one: the validation energy and force
  RMSE of A and B (meV/atom, meV/Å) and their ratios A/B;
* ``force_lead_from``: the first epoch from which A's validation force RMSE is below B's
  at every later common epoch (None when it is not below at the last common epoch), and
  likewise ``energy_lead_from``;
* window means over the common epochs from the force lead on: a single epoch's
  validation energy jumps by tens of per cent, so single-epoch energy ratios mislead;
* at equal time, when both curves carry per-epoch seconds (``time_s``): the errors at the
  last epoch each finished within the summed time of the shorter curve, and at the epoch
  of lowest validation loss within it (``val_loss``; the epoch whose weights the trainer
  exports), since a single epoch's validation energy is noisy.

Units: a ``log.csv`` holds RMSEs in meV/atom and meV/Å (the trainer's reporting units),
like the report's history.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

#: Columns a curve needs (the trainer's log.csv and the report's history share them).
REQUIRED = ("epoch", "val_energy_rmse", "val_forces_rmse")
#: Columns used when every row of both curves has them.
OPTIONAL = ("time_s", "val_loss")


def load_curve(spec: str) -> list[dict]:
    """Per-epoch rows of a curve: ``FILE.json#KEY`` (a real_data.py row) or a ``log.csv``.

    Returns:
        Rows sorted by epoch, each with at least ``epoch`` (int), ``val_energy_rmse``
        (meV/atom) and ``val_forces_rmse`` (meV/Å) as numbers, and ``time_s`` (s) and
        ``val_loss`` when the source has them.

    Raises:
        ValueError: the file cannot be read, the key is absent, the row has no history,
            a required column is missing or a value is not a finite number.
    """
    if "#" in spec:
        path, key = spec.split("#", 1)
        try:
            report = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"curve {spec!r}: cannot read {path} as JSON ({error})") from None
        runs = report.get("runs") if isinstance(report, dict) else None
        if not isinstance(runs, dict):
            raise ValueError(f"curve {spec!r}: {path} is not a real_data.py report")
        if key not in runs:
            raise ValueError(f"curve {spec!r}: no run {key!r}; the report has {sorted(runs)}")
        rows = runs[key].get("history")
        if not rows:
            raise ValueError(f"curve {spec!r}: run {key!r} has no history (skipped?)")
    else:
        try:
            with open(spec, newline="") as handle:
                rows = list(csv.DictReader(handle))
        except OSError as error:
            raise ValueError(f"curve {spec!r}: cannot read it ({error})") from None
        if not rows:
            raise ValueError(f"curve {spec!r}: no epochs in the file")
    curve = []
    for index, row in enumerate(rows):
        clean = {}
        for name in (*REQUIRED, *OPTIONAL):
            if name not in row:
                if name in OPTIONAL:
                    continue
                raise ValueError(f"curve {spec!r}: row {index} has no column {name!r}")
            try:
                value = float(row[name])
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value):
                raise ValueError(
                    f"curve {spec!r}: row {index} column {name!r} must be a finite number, "
                    f"got {row[name]!r}"
                )
            clean[name] = value
        clean["epoch"] = int(clean["epoch"])
        curve.append(clean)
    curve.sort(key=lambda r: r["epoch"])
    return curve


def lead_from(a: dict, b: dict, epochs: list[int], column: str) -> int | None:
    """First epoch from which ``a[e][column] < b[e][column]`` at every later common epoch."""
    first = None
    for epoch in reversed(epochs):
        if a[epoch][column] < b[epoch][column]:
            first = epoch
        else:
            break
    return first


def within_time(curve: list[dict], seconds: float) -> list[dict]:
    """The rows whose summed epoch time is within ``seconds`` (at least the first row)."""
    total, rows = 0.0, []
    for row in curve:
        total += row["time_s"]
        if total > seconds * (1 + 1e-9):
            break
        rows.append(row)
    return rows or curve[:1]


def compare(a: list[dict], b: list[dict], every: int = 50) -> dict:
    """Equal-epoch and equal-time comparison of curves ``a`` and ``b`` (see module doc).

    Raises:
        ValueError: ``every`` < 1, or the curves have no epoch in common.
    """
    if every < 1:
        raise ValueError(f"every must be a positive number of epochs, got {every}")
    by_a = {r["epoch"]: r for r in a}
    by_b = {r["epoch"]: r for r in b}
    common = sorted(set(by_a) & set(by_b))
    if not common:
        raise ValueError("the two curves have no epoch in common")

    def pair(ra: dict, rb: dict) -> dict:
        return {
            "energy_a": ra["val_energy_rmse"],
            "energy_b": rb["val_energy_rmse"],
            "energy_ratio": ra["val_energy_rmse"] / rb["val_energy_rmse"],
            "forces_a": ra["val_forces_rmse"],
            "forces_b": rb["val_forces_rmse"],
            "forces_ratio": ra["val_forces_rmse"] / rb["val_forces_rmse"],
        }

    shown = [e for e in common if e % every == 0]
    if common[-1] not in shown:
        shown.append(common[-1])
    result = {
        "epochs_a": a[-1]["epoch"],
        "epochs_b": b[-1]["epoch"],
        "common_epochs": [common[0], common[-1]],
        "equal_epochs": [{"epoch": e, **pair(by_a[e], by_b[e])} for e in shown],
        "force_lead_from": lead_from(by_a, by_b, common, "val_forces_rmse"),
        "energy_lead_from": lead_from(by_a, by_b, common, "val_energy_rmse"),
    }
    start = result["force_lead_from"]
    if start is not None:
        window = [e for e in common if e >= start]
        result["window_from_force_lead"] = {
            "epochs": [window[0], window[-1]],
            **{
                f"mean_{name}_{side}": sum(by[e][f"val_{name}_rmse"] for e in window) / len(window)
                for name in ("energy", "forces")
                for side, by in (("a", by_a), ("b", by_b))
            },
        }
    if all("time_s" in r for r in a + b):
        seconds = min(sum(r["time_s"] for r in a), sum(r["time_s"] for r in b))
        rows_a, rows_b = within_time(a, seconds), within_time(b, seconds)
        ra, rb = rows_a[-1], rows_b[-1]
        result["equal_time"] = {
            "seconds": seconds,
            "epoch_a": ra["epoch"],
            "epoch_b": rb["epoch"],
            **pair(ra, rb),
        }
        if all("val_loss" in r for r in rows_a + rows_b):
            ra = min(rows_a, key=lambda r: r["val_loss"])
            rb = min(rows_b, key=lambda r: r["val_loss"])
            result["equal_time_best"] = {
                "seconds": seconds,
                "epoch_a": ra["epoch"],
                "epoch_b": rb["epoch"],
                **pair(ra, rb),
            }
    return result


def table(result: dict, names: tuple[str, str]) -> str:
    """Markdown table of :func:`compare`'s result, with the leads and equal time below."""
    a, b = names
    lines = [
        f"| epoch | E {a} | E {b} | E ratio | F {a} | F {b} | F ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["equal_epochs"]:
        lines.append(
            f"| {r['epoch']} | {r['energy_a']:.3f} | {r['energy_b']:.3f} | "
            f"{r['energy_ratio']:.3f} | {r['forces_a']:.2f} | {r['forces_b']:.2f} | "
            f"{r['forces_ratio']:.3f} |"
        )
    lines.append("")
    lines.append(
        f"force lead of {a} from epoch {result['force_lead_from']}, "
        f"energy lead from epoch {result['energy_lead_from']}"
    )
    window = result.get("window_from_force_lead")
    if window:
        lines.append(
            f"means over epochs {window['epochs'][0]}-{window['epochs'][1]}: "
            f"E {window['mean_energy_a']:.3f} vs {window['mean_energy_b']:.3f}, "
            f"F {window['mean_forces_a']:.2f} vs {window['mean_forces_b']:.2f}"
        )
    for key, what in (("equal_time", "last epochs"), ("equal_time_best", "best epochs")):
        same = result.get(key)
        if same:
            lines.append(
                f"at {same['seconds']:.0f} s each, {what}: {a} epoch {same['epoch_a']} "
                f"(E {same['energy_a']:.3f}, F {same['forces_a']:.2f}), {b} epoch "
                f"{same['epoch_b']} (E {same['energy_b']:.3f}, F {same['forces_b']:.2f})"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="curve A: FILE.json#KEY or a log.csv")
    parser.add_argument("b", help="curve B: FILE.json#KEY or a log.csv")
    parser.add_argument("--every", type=int, default=50, help="table row every N epochs")
    parser.add_argument("--names", nargs=2, default=("A", "B"), help="labels of A and B")
    parser.add_argument("--output", type=Path, help="write the comparison as JSON")
    args = parser.parse_args(argv)
    try:
        curves = [load_curve(args.a), load_curve(args.b)]
        result = compare(*curves, every=args.every)
    except ValueError as error:
        parser.error(str(error))
    print(table(result, tuple(args.names)))
    if args.output:
        from hybridpot.fileio import atomic_write_text

        result = {
            "command": "python benchmarks/compare_curves.py "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "a": args.a,
            "b": args.b,
            **result,
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.output, json.dumps(result, indent=1) + "\n")
        print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
