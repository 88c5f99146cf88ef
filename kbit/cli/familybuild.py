"""`kbit family build [NAME ...] [--seeds N] [--ship]`: train a bundled family here with kbit's own
training code (under $KBIT_HOME/models, as KBIT_FAMILY_WEIGHTS=build uses it), with its first N
training seeds (kbit/demo/s1, kbit/demo/s1@seed2, ...), and, with --ship, write seed 1 as the
package's shipped 16-bit weights with checksums (what every machine then loads; maintainers)."""

from __future__ import annotations

import time

HELP = "train a bundled model family here (the shipped weights come from this); --ship replaces the package's copy"


def add_parser(sub) -> None:
    family = sub.add_parser("family", help="the bundled model families (micro, demo)")
    family.set_defaults(handler="familybuild:cmd_family")  # run by kbit.cli.main.run_handler
    family_sub = family.add_subparsers(dest="family_command", metavar="ACTION", required=True)
    p = family_sub.add_parser("build", help=HELP, description=HELP + ". Training takes minutes on a CPU (demo: about "
                              "6 min on 2 cores); a member already built here with the current recipe is reused.")
    p.add_argument("names", nargs="*", default=["demo"], metavar="NAME", help="families to build (default: demo)")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="build the first N training seeds of each member (default 1: the family's own seed); "
                   "seed n is kbit/<family>/<size>@seed<n>, what a sweep's `seeds: N` evaluates")
    p.add_argument("--ship", action="store_true",
                   help="write the result into the package (kbit/family/weights/) as float16 safetensors "
                   "with checksums; commit it, and update docs/RESULTS.md from a fresh `kbit demo`")


def cmd_family(args) -> int:
    from kbit.errors import UsageError
    from kbit.family import members, shipped

    unknown = [n for n in args.names if n not in members.FAMILIES]
    if unknown:
        raise UsageError(f"no bundled family {', '.join(map(repr, unknown))}; use one of {', '.join(members.FAMILIES)}")
    if args.seeds < 1:
        raise UsageError(f"--seeds {args.seeds}: give a number of seeds of 1 or more")
    if args.ship and args.seeds != 1:
        raise UsageError("--ship writes the family's own seed only; leave out --seeds (other seeds are trained on first use)")
    for name in args.names:
        for model in (m for seed in range(1, args.seeds + 1) for m in members.family_members(name, seed)):
            started = time.perf_counter()
            path = members.build_model(model)
            info = members.built_info(model)
            print(f"{model}: built at {path} ({info['train']['n_params']:,} parameters, "
                  f"{time.perf_counter() - started:.0f} s)")
            if args.ship:
                target = shipped.ship(path, model, info["recipe"], info["train"])
                print(f"  shipped to {target}")
    return 0
