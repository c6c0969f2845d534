"""Sets one cell of a parquet file with pyarrow (tests damage LeRobot metadata with it):
    edit_parquet.py FILE COLUMN ROW VALUE"""

import sys

import pyarrow as pa
import pyarrow.parquet as pq

path, column, row, value = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
t = pq.read_table(path)
i = t.schema.get_field_index(column)
if i < 0:
    sys.exit(f"no column {column!r} in {path}")
values = t.column(i).to_pylist()
values[row] = type(values[row])(value)
t = t.set_column(i, t.schema.field(i), pa.array(values, type=t.schema.field(i).type))
pq.write_table(t, path)
