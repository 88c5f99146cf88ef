"""Helpers more than one test folder uses (ports, polling, throwaway Postgres databases, sweeps
and in-process launchers); each folder's own helpers stay beside its tests."""
