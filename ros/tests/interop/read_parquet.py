"""Reads a parquet file with pyarrow (what LeRobot's RA-BC loader uses) and
prints its schema, metadata and columns as JSON."""

import json
import math
import sys

import pyarrow.parquet as pq

t = pq.read_table(sys.argv[1])
meta = {k.decode(): v.decode() for k, v in (t.schema.metadata or {}).items()}
print(json.dumps({
    "columns": [[f.name, str(f.type)] for f in t.schema],
    "metadata": meta,
    # NaN (a missing head) as null: JSON has no NaN.
    "data": {
        name: [None if isinstance(v, float) and math.isnan(v) else v for v in t.column(name).to_pylist()]
        for name in t.column_names
    },
}))
