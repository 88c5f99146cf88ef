"""Each command is registered once, in kbit.cli.main: its parser names the function that runs it."""

import argparse

from kbit.cli.main import build_parser, run_handler


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_names_a_function_that_exists():
    import importlib

    commands = subcommands(build_parser())
    assert {"submit", "status", "cancel", "results", "team", "demo", "report", "dashboard", "up", "down",
            "gateway", "serve", "export", "family"} <= set(commands)
    for name, parser in commands.items():
        handler = parser.get_default("handler")
        assert handler, f"`kbit {name}` has no handler"
        module, function = handler.split(":")
        assert callable(getattr(importlib.import_module(f"kbit.cli.{module}"), function)), name


def test_the_parsed_handler_is_what_runs(monkeypatch):
    import kbit.cli.commands as commands

    seen = []
    monkeypatch.setattr(commands, "cmd_status", lambda args: seen.append(args.sweep) or 7)
    args = build_parser().parse_args(["status", "3"])
    assert run_handler(args.handler, args) == 7 and seen == [3]
