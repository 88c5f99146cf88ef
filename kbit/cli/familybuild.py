"""`kbit family build [NAME ...] [--ship]`: train a bundled family here with kbit's own training
code (under $KBIT_HOME/models, as KBIT_FAMILY_WEIGHTS=build uses it) and, with --ship, write it as
the package's shipped 16-bit weights with checksums (what every machine then loads; maintainers)."""

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
    p.add_argument("--ship", action="store_true",
                   help="write the result into the package (kbit/family/weights/) as float16 safetensors "
                   "with checksums; commit it, and update docs/RESULTS.md from a fresh `kbit demo`")


def cmd_family(args) -> int:
    from kbit.errors import UsageError
    from kbit.family import members, shipped

    unknown = [n for n in args.names if n not in members.FAMILIES]
    if unknown:
        raise UsageError(f"no bundled family {', '.join(map(repr, unknown))}; use one of {', '.join(members.FAMILIES)}")
    for name in args.names:
        for model in members.family_members(name):
            started = time.perf_counter()
            path = members.build_model(model)
            info = members.built_info(model)
            print(f"{model}: built at {path} ({info['train']['n_params']:,} parameters, "
                  f"{time.perf_counter() - started:.0f} s)")
            if args.ship:
                target = shipped.ship(path, model, info["recipe"], info["train"])
                print(f"  shipped to {target}")
    return 0
