"""Parses the ROS 2 launch files in a folder without ROS 2 installed (Python AST, XML)
and prints, as JSON, each file with the files it references next to it and its
declared arguments.

    check_launch.py launch/
"""

import ast
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

folder = Path(sys.argv[1])
out = {}
for f in sorted(folder.glob("*.launch.py")):
    tree = ast.parse(f.read_text(), filename=str(f))
    funcs = [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    refs = sorted({n.value for n in ast.walk(tree)
                   if isinstance(n, ast.Constant) and isinstance(n.value, str)
                   and re.fullmatch(r"[\w./-]+\.(toml|yaml|json5)", n.value)})
    declared = sorted({n.args[0].value for n in ast.walk(tree)
                       if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "DeclareLaunchArgument"
                       and n.args and isinstance(n.args[0], ast.Constant)})
    out[f.name] = {"functions": funcs, "references": refs, "arguments": declared}
for f in sorted(folder.glob("*.launch.xml")):
    root = ET.parse(f).getroot()
    text = ET.tostring(root, encoding="unicode")
    refs = sorted(set(re.findall(r"\$\(dirname\)/([\w./-]+)", text)))
    declared = sorted(a.get("name") for a in root.iter("arg"))
    out[f.name] = {"root": root.tag, "references": refs, "arguments": declared}
print(json.dumps(out))
