#!/usr/bin/env python3
"""Checks that the code keeps the shape of its layers.

The build writes the layer table (cmake/TandemLayers.cmake): each layer,
its folder and the layers it uses. This script reads every source file of
every layer and fails when

  - a file includes a private header of a layer its own does not use,
    directly or through the layers it uses (dependencies point down only);
  - a layer of the core (src/) could reach a serving layer (ml_ranks/);
  - the table has a cycle, or names a layer it does not define;
  - a source file under src/ or ml_ranks/ lies in no layer's folder;
  - a layer uses a top layer: the command (launcher/), the Python package
    (python/) and the benchmarks (bench/) are checked like layers, over
    their whole folder, but nothing may use them;
  - a file outside the hdf5 layer includes <hdf5.h> (every HDF5 call goes
    through src/hdf5/, which holds the library lock and quiets errors).

    check_layers.py ROOT LAYERS_TXT      check the tree at ROOT
    check_layers.py --self-test          show that each rule can fail
"""
import os
import re
import sys
import tempfile

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
HDF5_HEADER = re.compile(r'^\s*#\s*include\s+<(hdf5|H5[A-Za-z]*)\.h>', re.M)
HDF5_FOLDER = "src/hdf5"
SOURCES = (".cpp", ".hpp", ".h", ".c")


def read_table(path):
    layers = {}
    for line in open(path):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        head, _, uses = line.partition(":")
        name, folder = head.split()
        layers[name] = (folder, uses.split())
    return layers


def closure(layers, errors):
    """Every layer each layer may reach; reports cycles and unknown names."""
    reach = {}
    state = {}

    def visit(name, path):
        if state.get(name) == "done":
            return reach[name]
        if state.get(name) == "busy":
            errors.append("cycle in the layer table: " + " -> ".join(path + [name]))
            return set()
        state[name] = "busy"
        out = set()
        for use in layers[name][1]:
            if use not in layers:
                errors.append(f"layer '{name}' uses '{use}', which is not a layer")
                continue
            out.add(use)
            out |= visit(use, path + [name])
        state[name] = "done"
        reach[name] = out
        return out

    for name in layers:
        visit(name, [])
    return reach


LIBRARY_TOPS = ("src", "ml_ranks")


def is_top_layer(folder):
    """A folder outside the library: launcher, python, bench."""
    return folder.split("/")[0] not in LIBRARY_TOPS


def folder_of_include(header, tops):
    parts = header.split("/")
    if parts[0] == "tandem" or len(parts) < 2:
        return None  # the public API, or a file beside its includer
    if parts[0] == "ml_ranks":
        return "/".join(parts[:2])
    if parts[0] in tops:
        return parts[0]
    return "src/" + parts[0]


def owner_of(rel_dir, by_folder):
    """The layer a folder's files belong to: its own folder's layer, or for
    a top layer's subfolders (python/native) the top layer's."""
    if rel_dir in by_folder:
        return by_folder[rel_dir]
    top = rel_dir.split("/")[0]
    if is_top_layer(top) and top in by_folder:
        return by_folder[top]
    return None


def check(root, layers):
    errors = []
    reach = closure(layers, errors)
    by_folder = {folder: name for name, (folder, _) in layers.items()}
    for name, (folder, _) in layers.items():
        if folder.startswith("src/"):
            serving = sorted(u for u in reach[name] if layers[u][0].startswith("ml_ranks/"))
            if serving:
                errors.append(f"core layer '{name}' uses serving layer(s) {', '.join(serving)}")
        for use in layers[name][1]:
            if use in layers and is_top_layer(layers[use][0]):
                errors.append(f"layer '{name}' uses '{use}', which is outside the library")
    tops = sorted({folder.split("/")[0] for folder, _ in layers.values()})
    files = 0
    for top in tops:
        for dirpath, _, names in os.walk(os.path.join(root, top)):
            rel_dir = os.path.relpath(dirpath, root)
            for n in sorted(names):
                if not n.endswith(SOURCES):
                    continue
                files += 1
                rel = os.path.join(rel_dir, n)
                owner = owner_of(rel_dir, by_folder)
                if owner is None:
                    errors.append(f"{rel}: in no layer's folder")
                    continue
                text = open(os.path.join(dirpath, n), errors="replace").read()
                m = HDF5_HEADER.search(text)
                if m and rel_dir != HDF5_FOLDER:
                    line = text.count("\n", 0, m.start()) + 1
                    errors.append(f"{rel}:{line}: includes <{m.group(1)}.h>; HDF5 is called "
                                  f"from {HDF5_FOLDER}/ only")
                for m in INCLUDE.finditer(text):
                    target = folder_of_include(m.group(1), tops)
                    if target is None or target == rel_dir or by_folder.get(target) == owner:
                        continue
                    used = by_folder.get(target)
                    line = text.count("\n", 0, m.start()) + 1
                    if used is None:
                        errors.append(f"{rel}:{line}: includes {m.group(1)}, in no layer")
                    elif used not in reach[owner]:
                        errors.append(f"{rel}:{line}: layer '{owner}' includes {m.group(1)} of "
                                      f"layer '{used}', which it does not use")
    return errors, files


def self_test():
    """Each rule fails on a tree made to break it."""
    cases = {
        "upward include": ({"src/low/a.hpp": '#include "high/b.hpp"\n', "src/high/b.hpp": ""},
                           "low src/low :\nhigh src/high : low\n"),
        "core uses serving": ({"src/core/a.hpp": "", "ml_ranks/serving/b.hpp": ""},
                              "serving ml_ranks/serving :\ncore src/core : serving\n"),
        "cycle": ({"src/a/x.hpp": "", "src/b/y.hpp": ""}, "a src/a : b\nb src/b : a\n"),
        "stray file": ({"src/a/x.hpp": "", "src/nowhere/y.cpp": ""}, "a src/a :\n"),
        "a layer uses the command": ({"src/a/x.hpp": "", "launcher/m.cpp": ""},
                                     "launcher launcher :\na src/a : launcher\n"),
        "the command includes what it does not use": (
            {"src/a/x.hpp": "", "src/b/y.hpp": "", "launcher/sub/m.cpp": '#include "b/y.hpp"\n'},
            "a src/a :\nb src/b :\nlauncher launcher : a\n"),
        "raw HDF5": ({"src/a/x.cpp": "#include <hdf5.h>\n", "src/hdf5/y.cpp": "#include <hdf5.h>\n"},
                     "hdf5 src/hdf5 :\na src/a : hdf5\n"),
    }
    failed = 0
    for what, (files, table) in cases.items():
        with tempfile.TemporaryDirectory() as d:
            for rel, text in files.items():
                os.makedirs(os.path.join(d, os.path.dirname(rel)), exist_ok=True)
                open(os.path.join(d, rel), "w").write(text)
            open(os.path.join(d, "layers.txt"), "w").write(table)
            errors, _ = check(d, read_table(os.path.join(d, "layers.txt")))
            if not errors:
                print(f"self-test: '{what}' was not caught")
                failed += 1
    print(f"self-test: {len(cases) - failed} passed, {failed} failed")
    return failed == 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return 0 if self_test() else 1
    root, table = sys.argv[1], sys.argv[2]
    layers = read_table(table)
    errors, files = check(root, layers)
    for e in errors:
        print("layers:", e)
    print(f"layers: {len(layers)} layers, {files} files, {len(errors)} violation(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
