"""Do the demo family's verdicts survive another training seed? Builds seeds 2..N of the demo family
(seed 1 ships with the package; the others are trained here, as a sweep's `seeds:` trains them on
first use), runs one sweep over every member x seed embedded (`kbit demo --sweep`), then analyses
each seed alone and all seeds pooled (each size's seeds one point, resampled before the documents).

    python -m benchmarks.seeds [--seeds 3] [--limit 50] [--sizes s1 s2 s3] [--threads 2] [--home DIR]

The grid is the demo's, cut so the whole fits in about 15 minutes on 2 CPU cores beside the two
builds (about 5 minutes each): k = 3, 4, 6 and 16 (4-bit against lower and higher k), int and
quantile (the data-type finding's first pair), blocks 64 and 1024 (the block finding), on 50
documents of each accuracy task (the demo takes 150) and all 24 held-out chapters. Prints, per
metric, each finding's verdict and margin for every seed alone and pooled, and whether the verdict
holds in every seed. `--sizes` keeps some sizes only (the sweep then lists their ids): s4 is 60% of a
seed's training on a quiet machine and far more on a loaded one. Output: benchmarks/seeds.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.reproducibility import python

METRICS = ("mean_zero_shot/acc", "kbit_heldout/bits_per_byte")
SWEEP = """\
name: seeds
team: demo
models: {models}
grid:
  bits: [3, 4, 6]
  dtypes: [int, quantile]
  blocksizes: [64, 1024]
baseline: true
tasks: [kbit_lastword, kbit_choice, kbit_heldout]
eval: {{num_fewshot: 0, limit: {limit}, batch_size: 16, seed: 1234}}
"""


run = python  # `python ARGS` with KBIT_HOME=home, embedded SQLite (benchmarks/reproducibility.py)


def members(family: str, seed: int, sizes) -> list[str]:
    """The family's members of `seed`, only `sizes` when given (kbit/demo/s1@seed2 ...)."""
    from kbit.family.members import family_members, parse_bundled

    return [m for m in family_members(family, seed) if not sizes or parse_bundled(m)[1] in sizes]


def build(home: Path, family: str, seeds: int, threads: int, sizes) -> list[str]:
    """Train seeds 2..`seeds` of every member (of `sizes`); one line per member with its training
    time (a member already built in this home: the time its marker records)."""
    import json

    lines = []
    for seed in range(2, seeds + 1):
        for model in members(family, seed, sizes):
            started = time.perf_counter()
            run(home, ["-c", f"from kbit.family.members import ensure_model; ensure_model({model!r})"], threads)
            took = time.perf_counter() - started
            if took < 10:  # built earlier in this home: what its build took then
                marker = json.loads((home / "models" / family / model.split("/")[2] / "kbit-build.json").read_text())
                lines.append(f"{model}: trained in {marker['train']['seconds']:.0f} s (earlier, in this home)")
            else:
                lines.append(f"{model}: trained in {took:.0f} s")
            print(lines[-1], flush=True)
    return lines


def analyses(home: Path, metric: str, seeds: int) -> tuple[dict, list[str]]:
    """({'seed n' or 'pooled': Findings} of `metric` over the sweep's runs, each size's 16-bit score
    by seed: one line per size)."""
    os.environ["KBIT_HOME"] = str(home)
    os.environ.pop("KBIT_DATABASE_URL", None)
    from kbit import settings
    from kbit.analysis import findings, rows_to_frame
    from kbit.db import queries, session_scope
    from kbit.service.operations import Operations

    task, name = metric.split("/", 1)
    with Operations.open() as local, session_scope(local.engine) as s:
        rows = queries.frontier_rows(s, task=task, metric=name)
        scores = queries.document_scores(s, [r["run_id"] for r in rows], task, name)
    frame = rows_to_frame(rows)
    seed_of = frame["model"].map(lambda m: settings.split_seed(m)[1])
    out = {f"seed {n}": findings(frame[seed_of == n], metric, scores) for n in range(1, seeds + 1)}
    out["pooled"] = findings(frame, metric, scores)
    baseline = frame[frame["bits"] == 16].assign(size=frame["model"].map(lambda m: settings.split_seed(m)[0]),
                                                 seed=seed_of).sort_values("run_id").drop_duplicates(["size", "seed"])
    sizes = [f"- {size}: " + ", ".join(f"{v:.4f}" for v in runs.sort_values("seed")["value"])
             + f" (spread {runs['value'].max() - runs['value'].min():.4f}, median stderr {runs['stderr'].median():.4f})"
             for size, runs in baseline.groupby("size", sort=True)]
    return out, sizes


def margin_text(finding) -> str:
    m = finding.margin
    if m is None:
        return finding.verdict
    return f"{finding.verdict} {m.value:+.4f} [{m.low:+.4f}, {m.high:+.4f}]"


def decided_budgets(found) -> str:
    table = found.budgets
    if table.empty or "winner" not in table:
        return "–"
    counted = table[table["winner"].notna() & ~table["partial"].astype(bool)]
    winners = sorted({w for w, d in zip(counted["winner"], counted["decided"]) if d})
    return f"{int(counted['decided'].fillna(False).sum())} of {len(counted)} ({', '.join(winners) or 'none'})"


def table(metric: str, found: dict, sizes: list[str]) -> list[str]:
    names = list(found)
    seeds = [n for n in names if n != "pooled"]
    lines = [f"## {metric}", "", "| verdict | " + " | ".join(names) + " | holds in every seed |",
             "|---|" + "---|" * (len(names) + 1)]
    for finding in found["pooled"].findings:
        words = [found[n].finding(finding.id) for n in names]
        alone = sorted({found[n].finding(finding.id).verdict for n in seeds})
        holds = (f"yes: {alone[0]}" if alone in (["agrees"], ["differs"]) else "–" if alone == ["not enough data"]
                 else "no: " + ", ".join(alone))
        lines.append(f"| {finding.id} | " + " | ".join(margin_text(w) for w in words) + f" | {holds} |")
    lines.append("| budgets decided (winners) | " + " | ".join(decided_budgets(found[n]) for n in names) + " | |")
    pooled = found["pooled"]
    lines += ["", f"Pooled: {pooled.n_runs} runs, seeds per size "
              + ", ".join(f"{m} {n}" for m, n in pooled.seeds.items()) + ". The 16-bit score of each size, seed 1 first:",
              "", *sizes]
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--family", default="demo", help="bundled family (micro: a quick check of this script)")
    ap.add_argument("--sizes", nargs="*", help="only these sizes (e.g. s1 s2 s3; default: every size, the sweep's "
                    "`{family: F, seeds: N}`)")
    ap.add_argument("--limit", type=int, default=50, help="documents per accuracy task (the demo's: 150)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the builds (the sweep: one per task)")
    ap.add_argument("--home", type=Path, help="KBIT_HOME to use (default: a fresh temporary one)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kbit-seeds-") as tmp:
        home = args.home or Path(tmp)
        home.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        built = build(home, args.family, args.seeds, args.threads, args.sizes)
        build_s = time.perf_counter() - started
        sweep = home / "seeds.yaml"
        models = ([m for seed in range(1, args.seeds + 1) for m in members(args.family, seed, args.sizes)]
                  if args.sizes else f"[{{family: {args.family}, seeds: {args.seeds}}}]")
        sweep.write_text(SWEEP.format(models=models if isinstance(models, str) else "[" + ", ".join(models) + "]",
                                      limit=args.limit))
        started = time.perf_counter()
        run(home, ["-m", "kbit.cli.main", "demo", "--sweep", str(sweep)])
        sweep_s = time.perf_counter() - started
        print(f"builds {build_s:.0f} s, sweep {sweep_s:.0f} s", flush=True)
        out = [f"{args.family} family, seeds 2..{args.seeds} trained here ({args.threads} torch threads), seed 1 "
               "shipped:", "", *built, "", f"builds {build_s:.0f} s; sweep (`kbit demo --sweep`, {args.seeds} seeds x "
               f"{'sizes ' + ' '.join(args.sizes) if args.sizes else 'every size'} x 13 configs, limit {args.limit}) "
               f"{sweep_s:.0f} s", ""]
        started = time.perf_counter()
        for metric in METRICS:
            out += [*table(metric, *analyses(home, metric, args.seeds)), ""]
        out.append(f"analysis ({len(METRICS)} metrics x {args.seeds + 1} analyses, 4,000 replicates) "
                   f"{time.perf_counter() - started:.0f} s")
    print("\n".join(out))


if __name__ == "__main__":
    main()
