"""kbit: k-bit inference scaling laws as a shared service.

Parts (docs/DESIGN.md; docs/interfaces.md for the calls between them): kernels (quantization),
spec (the sweep language, settings, errors), analysis (frontiers and findings), workers (one unit
of work), db (durable store and queue), service (scheduler and operations without Ray), cluster
(Ray shells), cli (the `kbit` command) and dashboard (Streamlit).
"""

__version__ = "0.1.0"
