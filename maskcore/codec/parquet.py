"""Arrow tables <-> Parquet bytes (manifests, partition results, run reports)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq


def parquet_bytes(table: pa.Table) -> bytes:
    """The table as one Parquet file, in memory."""
    out = pa.BufferOutputStream()
    pq.write_table(table, out)
    return out.getvalue().to_pybytes()
