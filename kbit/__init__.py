"""kbit: k-bit inference scaling laws as a shared service.

Parts (docs/DESIGN.md; docs/interfaces.md for the calls between them): kernels (quantization),
sweeps (the sweep language), analysis (frontiers and findings), family (the bundled model family
and its tasks), workers (one unit of work), db (durable store and queue), service (scheduler and
operations without Ray), cluster (Ray shells), cli (the `kbit` command) and dashboard (Streamlit);
beside them the leaves every part shares: settings, errors and version.
"""

__version__ = "0.1.0"
