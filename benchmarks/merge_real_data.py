"""Merge the JSON reports of several ``benchmarks/real_data.py`` runs into one report.

Runs are trained in separate processes when they run side by side (one process per
variant and size on a GPU, or one per core), or over several sessions (``--extend``).
This script puts their rows into one report and writes what ``real_data.py`` writes
for a single run: the JSON, the Markdown table next to it, the validation-curve PNGs and
the NaCl(aq) learning-curve PNG.

    python benchmarks/merge_real_data.py --output benchmarks/results/merged.json \
        a.json b.json [...] [--replace]

Rows keep their keys (``dataset/.../variant``). The same key from two inputs:

* trained with different seeds: the later one is kept as ``<key>-seed<S>`` (a variant of
  its own in the table and the plots: two seeds of one model side by side);
* same seed: refused, naming the key and both files, unless ``--replace``, with which the
  later input wins (an extended run superseding its earlier stop);
* either one skipped (a dataset absent, MACE not installed): the trained one is kept.

The merged ``meta`` holds each input's file name and meta (command, device, torch, ...).
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def row_seed(row: dict) -> int | None:
    """The training seed a row was trained with (None for skipped rows)."""
    return row.get("settings", {}).get("training", {}).get("seed")


def merge(reports: list[tuple[str, dict]], replace: bool = False) -> dict:
    """Merge ``(name, report)`` pairs, in order, into one report.

    Raises:
        ValueError: an input is not a real_data report (no ``runs`` mapping), or one key
            appears twice with the same seed and ``replace`` is False.
    """
    runs: dict[str, dict] = {}
    origin: dict[str, str] = {}
    inputs = []
    for name, report in reports:
        if not isinstance(report, dict) or not isinstance(report.get("runs"), dict):
            raise ValueError(f"{name}: not a real_data.py report (no 'runs' mapping)")
        inputs.append({"file": name, "meta": report.get("meta", {})})
        for key, row in report["runs"].items():
            if key in runs and ("skipped" in row or "skipped" in runs[key]):
                # A skipped row holds no result: any trained row wins over it.
                if "skipped" in runs[key]:
                    runs[key], origin[key] = row, name
                continue
            target = key
            if key in runs and row_seed(row) != row_seed(runs[key]):
                target = f"{key}-seed{row_seed(row)}"
            if target in runs and not replace:
                raise ValueError(
                    f"run {target!r} is in both {origin[target]} and {name} with the same "
                    "seed; pass --replace to keep the later one"
                )
            runs[target] = row
            origin[target] = name
    return {"meta": {"merged_from": inputs}, "runs": runs}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="real_data.py JSON reports")
    parser.add_argument("--output", type=Path, required=True, help="merged JSON report")
    parser.add_argument(
        "--replace", action="store_true", help="a later input replaces a same-seed row"
    )
    args = parser.parse_args(argv)
    reports = []
    for path in args.inputs:
        try:
            reports.append((path.name, json.loads(path.read_text())))
        except (OSError, json.JSONDecodeError) as error:
            parser.error(f"inputs: cannot read {path} as JSON ({error})")
    try:
        merged = merge(reports, replace=args.replace)
    except ValueError as error:
        parser.error(str(error))
    merged["meta"]["command"] = "python benchmarks/merge_real_data.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )

    from hybridpot.fileio import atomic_write_text

    real_data = runpy.run_path(str(HERE / "real_data.py"))  # its functions, not its main
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output, json.dumps(merged, indent=1) + "\n")
    atomic_write_text(args.output.with_suffix(".md"), real_data["markdown"](merged["runs"]) + "\n")
    real_data["report_plots_and_table"](merged["runs"], args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
