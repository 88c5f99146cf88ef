"""Alembic migrations of kbit's schema (a package so that installs ship them)."""
