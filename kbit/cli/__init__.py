"""The `kbit` command: argparse (`main.py`), what each command does (`commands.py`), console
output (`progress.py`), the demo, the results report, `kbit up/down` on one machine. Nothing
imports this package."""
