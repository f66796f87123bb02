#!/usr/bin/env python3
"""Checks that the core's files keep the layer order declared in core/README.md.

Reads the "Layers" table of core/README.md (one row per layer, lowest first,
each naming the folder that holds it), then derives two graphs over the
core's parts (a part is a .c file with its .h: `net/server.c` and
`net/server.h` are one part):

  - includes: every `#include "..."` of every file under core/;
  - calls: when a build folder is given, the object files' symbol tables
    (`nm`): a part that uses a symbol another part defines depends on it,
    whether or not it includes its header.

It fails, naming the two files, on
  - an edge from a lower layer to a higher one ("reaches up");
  - a cycle between parts, even within one layer;
  - a file under core/ that lies in no declared layer.

usage: check_layers.py SOURCE_DIR [BUILD_DIR]
"""
import os
import re
import subprocess
import sys
from collections import defaultdict

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
ROW = re.compile(r'^\|\s*(\d+)\s+([a-z_]+)\s*\|\s*`?(core/[^|`\s]*)`?\s*\|', re.M)


def read_layers(src):
    path = os.path.join(src, "core", "README.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    layers = []
    for m in ROW.finditer(text):
        layers.append((int(m.group(1)), m.group(2), m.group(3).rstrip("/")))
    if not layers:
        sys.exit(f"{path}: no layer table found (rows like '| 1 base | core/base | ... |')")
    ranks = [n for n, _, _ in layers]
    names = {}
    for n, name, _ in layers:
        if names.setdefault(n, name) != name:
            sys.exit(f"{path}: layer {n} has two names ({names[n]}, {name})")
    if ranks != sorted(ranks) or len(set(names.values())) != len(names):
        sys.exit(f"{path}: list the layers lowest first, one number per name")
    return layers


def layer_of(rel, layers):
    """The layer whose folder holds `rel` (the longest match), or whose entry
    names the file itself without its extension (`core/main`)."""
    best = None
    for rank, name, prefix in layers:
        if rel.startswith(prefix + "/") or os.path.splitext(rel)[0] == prefix:
            if best is None or len(prefix) > len(best[2]):
                best = (rank, name, prefix)
    return best


def part_of(rel):
    return os.path.splitext(rel)[0]


def core_files(src):
    out = []
    for root, _, files in os.walk(os.path.join(src, "core")):
        for f in files:
            if f.endswith((".c", ".h")):
                out.append(os.path.relpath(os.path.join(root, f), src))
    return sorted(out)


def include_edges(src, files):
    """Every layer folder is on the include path (core/CMakeLists.txt), so
    `#include "buf.h"` names core/base/buf.h wherever it is written: an
    include is resolved by its name among the core's files (names are
    unique; a clash is reported)."""
    by_name = defaultdict(list)
    for rel in files:
        by_name[os.path.basename(rel)].append(rel)
    edges, problems = [], []
    for name, rels in sorted(by_name.items()):
        if len(rels) > 1:
            problems.append(f"{' and '.join(rels)}: two core files named {name}; "
                            "includes by name would be ambiguous")
    for rel in files:
        with open(os.path.join(src, rel), encoding="utf-8") as f:
            text = f.read()
        for m in INCLUDE.finditer(text):
            inc = m.group(1)
            here = os.path.normpath(os.path.join(os.path.dirname(rel), inc))
            if here in files:
                target = here
            else:
                found = by_name.get(os.path.basename(inc), [])
                target = found[0] if len(found) == 1 else None
            if target and target != rel:
                edges.append((rel, target, f'includes "{inc}"'))
    return edges, problems


def call_edges(src, build, files):
    """Edges from the core's object files: uses of symbols defined elsewhere."""
    objdir = None
    for root, dirs, _ in os.walk(build, followlinks=True):
        if os.path.basename(root) == "sbcore.dir":
            objdir = root
            break
    if not objdir:
        sys.exit(f"{build}: no sbcore.dir with object files; build the core first")
    sources = {part_of(f): f for f in files if f.endswith(".c")}
    defs, uses = {}, defaultdict(set)
    for root, _, names in os.walk(objdir, followlinks=True):
        for name in names:
            if not name.endswith(".c.o"):
                continue
            obj = os.path.join(root, name)
            rel_obj = os.path.relpath(obj, objdir)[: -len(".c.o")]
            part = part_of(os.path.join("core", rel_obj))
            if part not in sources:
                continue  # an object of a file that no longer exists
            out = subprocess.run(["nm", obj], capture_output=True, text=True,
                                 check=True).stdout
            for line in out.splitlines():
                f = line.split()
                if len(f) == 3 and f[1] in "TDBRC":
                    defs[f[2]] = sources[part]
                elif len(f) == 2 and f[0] == "U":
                    uses[sources[part]].add(f[1])
    edges = []
    for user, syms in uses.items():
        by_target = defaultdict(list)
        for s in syms:
            t = defs.get(s)
            if t and t != user:
                by_target[t].append(s)
        for t, names in by_target.items():
            edges.append((user, t, "calls " + ", ".join(sorted(names)[:4]) +
                          (" ..." if len(names) > 4 else "")))
    return edges


def cycles(edges):
    """Strongly connected components of more than one part (Tarjan)."""
    graph = defaultdict(set)
    for a, b, _ in edges:
        pa, pb = part_of(a), part_of(b)
        if pa != pb:
            graph[pa].add(pb)
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(list(graph)):
        if v not in index:
            visit(v)
    return out


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    src = sys.argv[1]
    layers = read_layers(src)
    files = core_files(src)
    problems = []
    for f in files:
        if not layer_of(f, layers):
            problems.append(f"{f}: in no layer of core/README.md; put it in a layer's folder")
    edges, clashes = include_edges(src, files)
    problems += clashes
    if len(sys.argv) == 3:
        edges += call_edges(src, sys.argv[2], files)
    for a, b, how in edges:
        la, lb = layer_of(a, layers), layer_of(b, layers)
        if la and lb and lb[0] > la[0]:
            problems.append(f"{a} ({la[1]}) {how} of {b} ({lb[1]}): a lower layer "
                            f"must not reach up; hand it a function pointer instead")
    for comp in cycles(edges):
        members = set(comp)
        ties = sorted({f"{a} -> {b}: {how}" for a, b, how in edges
                       if part_of(a) in members and part_of(b) in members
                       and part_of(a) != part_of(b)})
        problems.append("cycle between " + ", ".join(comp) + ":\n    " +
                        "\n    ".join(ties))
    if problems:
        print("\n".join(problems))
        print(f"{len(problems)} layering problem(s)")
        return 1
    print(f"layers: {len(files)} files in {len(layers)} layers, {len(edges)} edges, "
          "no cycle, nothing reaches up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
