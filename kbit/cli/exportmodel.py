"""`kbit export RUN_ID --output DIR [--force] [--check]`: a done run's k-bit model as a checkpoint
(kbit.workers.export, format in docs/interfaces.md), loadable with `kbit.kernels.load_quantized`."""

from __future__ import annotations

HELP = "write a done run's k-bit model (packed codes, scales, tokenizer, manifest) as a loadable checkpoint"


def add_parser(sub) -> None:
    p = sub.add_parser("export", help=HELP, description=HELP + ". The model is loaded and quantized here as the "
                       "run's worker did (GPTQ with the run's calibration), so this machine must reach the model. "
                       "Load it with `from kbit.kernels import load_quantized; model = load_quantized(DIR)`.")
    p.set_defaults(handler="exportmodel:cmd_export")  # run by kbit.cli.main.run_handler
    p.add_argument("run_id", type=int, metavar="RUN_ID", help="a done run (the dashboard's Run page shows ids)")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="folder to write (new or empty)")
    p.add_argument("--force", action="store_true", help="replace DIR when it exists and is not empty")
    p.add_argument("--check", action="store_true",
                   help="then load DIR and evaluate it with the run's eval: exit 1 unless the stored scores come back "
                   "to the last digit (same machine as the run)")


def cmd_export(args) -> int:
    from kbit.db import queries, session_scope
    from kbit.errors import ExportError
    from kbit.service import Operations
    from kbit.workers import export

    with Operations.open() as local, session_scope(local.engine) as s:
        run = queries.run_detail(s, args.run_id)
    export.check_exportable(run)
    manifest = export.export_run(run, args.output, force=args.force)
    bits = manifest["bits"]
    charged = bits["total_bits"] / 8
    print(f"exported run {args.run_id} ({run['model']} · {manifest['label']}) to {args.output}")
    print(f"  tensors: {manifest['tensor_bytes']:,} bytes; the run's total bits / 8: {charged:,.0f} bytes "
          f"({manifest['tensor_bytes'] / charged - 1:+.2%}); 16-bit rest of the model held as {manifest['model_dtype']}")
    print(f"  load it: from kbit.kernels import load_quantized; model = load_quantized({str(args.output)!r})")
    if args.check:
        stored = run.get("metrics") or []
        problems = export.score_differences(stored, export.evaluate_checkpoint(args.output, run["eval"]))
        if problems:
            raise ExportError(f"the checkpoint in {args.output} does not reproduce run {args.run_id}'s scores "
                              f"({len(problems)} of {len(stored)} differ; first: {problems[0]}); a run evaluated on "
                              "another machine or kbit version can differ in the last digits")
        print(f"  check: the checkpoint reproduces all {len(stored)} stored scores exactly")
    return 0
