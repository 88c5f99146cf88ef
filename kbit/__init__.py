"""kbit: k-bit inference scaling laws as a shared service.

Parts (see ../shared/DESIGN.md and docs/interfaces.md): kernels (quantization), workers (one unit
of work), db (durable store and queue), cluster (Ray scheduler, client API, CLI), dashboard
(Streamlit). Import direction: cluster -> workers -> kernels; cluster -> db; dashboard -> db.
"""

__version__ = "0.1.0"
