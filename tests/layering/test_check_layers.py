#!/usr/bin/env python3
"""Self-test of check_layers.py: on small made-up trees it must pass a clean
one and fail, naming both files, an include that reaches up, a cycle within
a layer, and a file in no layer."""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TABLE = """| Layer | Folder | What |
|---|---|---|
| 1 base | `core/base` | x |
| 2 net | `core/net` | y |
| 3 main | `core/main` | z |
"""


def tree(files):
    root = tempfile.mkdtemp(prefix="layers-")
    os.makedirs(os.path.join(root, "core"))
    with open(os.path.join(root, "core", "README.md"), "w") as f:
        f.write(TABLE)
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    return root


def run(files):
    r = subprocess.run([sys.executable, os.path.join(HERE, "check_layers.py"),
                        tree(files)], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def expect(name, files, code, *needles):
    rc, out = run(files)
    ok = rc == code and all(n in out for n in needles)
    print(("ok   " if ok else "FAIL ") + name)
    if not ok:
        print(f"  exit {rc}, wanted {code}; output:\n{out}")
    return ok


clean = {
    "core/base/buf.h": "",
    "core/base/buf.c": '#include "buf.h"\n',
    "core/net/server.h": '#include "buf.h"\n',
    "core/net/server.c": '#include "server.h"\n#include "buf.h"\n',
    "core/main.c": '#include "server.h"\n',
}
results = [
    expect("a clean tree passes", clean, 0, "no cycle"),
    expect("an include that reaches up fails",
           {**clean, "core/base/buf.c": '#include "server.h"\n'}, 1,
           "core/base/buf.c (base)", "core/net/server.h (net)",
           "must not reach up"),
    expect("a cycle within a layer fails",
           {**clean, "core/net/a.h": '#include "b.h"\n',
            "core/net/b.h": '#include "a.h"\n'}, 1,
           "cycle between core/net/a, core/net/b"),
    expect("a file in no layer fails",
           {**clean, "core/stray.c": ""}, 1, "core/stray.c: in no layer"),
    expect("two files of one name fail",
           {**clean, "core/net/buf.h": ""}, 1, "two core files named buf.h"),
]
sys.exit(0 if all(results) else 1)
