"""A tiny deterministic TOML writer.

Only what bundle.toml needs: strings, ints, floats, bools, arrays of scalars,
nested tables and arrays of tables. Floats are written as the shortest repr of
the float32 value (``repr(float(np.float32(x)))``), so a reader that parses
the text as f64 and casts to f32 recovers the exact float32 value.
"""

from __future__ import annotations

import math
import re

import numpy as np

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def f32(x) -> float:
    """The float32 value of x, as a Python float."""
    return float(np.float32(x))


def _fmt_float(x: float) -> str:
    v = f32(x)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    s = repr(v)
    return s


def _fmt_str(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\u{o:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _fmt_key(k: str) -> str:
    return k if _BARE_KEY.match(k) else _fmt_str(k)


def _fmt_scalar(v) -> str:
    if isinstance(v, bool | np.bool_):
        return "true" if v else "false"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        return _fmt_float(float(v))
    if isinstance(v, str):
        return _fmt_str(v)
    raise TypeError(f"unsupported TOML value {v!r} ({type(v).__name__})")


def _fmt_array(values, per_line: int = 8) -> str:
    items = [_fmt_scalar(v) for v in values]
    one_line = "[" + ", ".join(items) + "]"
    if len(items) <= per_line or len(one_line) <= 100:
        return one_line
    lines = ["["]
    for i in range(0, len(items), per_line):
        lines.append("  " + ", ".join(items[i : i + per_line]) + ",")
    lines.append("]")
    return "\n".join(lines)


def _is_table(v) -> bool:
    return isinstance(v, dict)


def _is_table_array(v) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(isinstance(x, dict) for x in v)


def _emit(table: dict, path: list[str], out: list[str], comments: dict[str, str]) -> None:
    scalars = [(k, v) for k, v in table.items() if not _is_table(v) and not _is_table_array(v)]
    subtables = [(k, v) for k, v in table.items() if _is_table(v) or _is_table_array(v)]
    for k, v in scalars:
        if v is None:
            continue
        if isinstance(v, list | tuple | np.ndarray):
            text = _fmt_array(list(v))
        else:
            text = _fmt_scalar(v)
        line = f"{_fmt_key(k)} = {text}"
        c = comments.get(".".join(path + [k]))
        if c:
            line += f"  # {c}"
        out.append(line)
    for k, v in subtables:
        sub = path + [k]
        header = ".".join(_fmt_key(p) for p in sub)
        if _is_table(v):
            has_scalars = any(not _is_table(x) and not _is_table_array(x) for x in v.values())
            if has_scalars or not v:
                # tables holding only sub-tables are implicit (no empty [header])
                out.append("")
                c = comments.get(".".join(sub))
                out.append(f"[{header}]" + (f"  # {c}" if c else ""))
            _emit(v, sub, out, comments)
        else:
            for item in v:
                out.append("")
                out.append(f"[[{header}]]")
                _emit(item, sub, out, comments)


def dumps(doc: dict, header: str | None = None, comments: dict[str, str] | None = None) -> str:
    """Serialise ``doc`` (insertion-ordered nested dicts) to TOML text.

    ``comments`` maps dotted key paths to trailing comments.
    """
    out: list[str] = []
    if header:
        for line in header.strip("\n").splitlines():
            out.append(f"# {line}" if line else "#")
        out.append("")
    _emit(doc, [], out, comments or {})
    return "\n".join(out).lstrip("\n") + "\n"
