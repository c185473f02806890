#!/usr/bin/env python3
"""Every code block in README.md and docs/ is tested code.

Each fenced block in C, C++, Fortran, Python, TOML or CMake must follow a
marker that says how it is checked:

    <!-- check: ACTION [harness=NAME] [project=NAME] [file=NAME] [touch=a,b] [np=N] [job=JOB] -->

ACTION is one of
  compile   C, C++, Fortran: compile and link against the installed libtandem
            (a shared object with no undefined symbols, or an executable when
            the block has main); Python: byte-compile.
  validate  TOML: `tandem validate` on it.
  run       TOML: `mpirun -np N tandem run` on it, which must exit 0;
            (run_dir=DIR names its run directory, in PROJECT's);
            Python: run it with the installed package on PYTHONPATH, under
            `mpirun -np N` when np= is given (an mpi4py program).
  task      Python: run it as the command task of the workflow
            tests/docs/harness/JOB.toml (job=JOB), with that job's services.
  write     save the block as FILE in PROJECT, for a later block of the same
            project (a task library, a job file).
  build     CMake: the block is PROJECT's CMakeLists.txt; configure it with
            -DCMAKE_PREFIX_PATH=PREFIX, as the docs say, and build.

harness=NAME puts the block into tests/docs/harness/NAME.EXT in place of the
line holding @DOC@ (a function body, the includes it needs, a [job] table).
The block runs in PROJECT's directory (or a fresh one), where touch= makes
the named files (executable, empty) that a workflow points at (bin/ is on
PATH), models=a.pt,b.pt makes there TorchScript models that double their
input and carry 64 MiB of weights they do not use (so that they take about a
second to load: the docs' first requests come while they load), and
stub=PATH builds there a library of the functions that
harness/stub_tasks.cpp defines. A compiled program with main is run with
np= ranks and args= (see run_program).
JSON blocks need no marker: they must parse.

Usage: check_docs.py SOURCE_DIR PREFIX MPIEXEC [MPIEXEC_FLAGS...]
       check_docs.py --self-test
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

CHECKED = {"c", "cpp", "fortran", "python", "toml", "cmake"}
EXT = {"c": "c", "cpp": "cpp", "fortran": "f90", "python": "py", "toml": "toml", "cmake": "cmake"}
MARKER = re.compile(r"^<!--\s*check:\s*(\w+)((?:\s+\w+=\S+)*)\s*-->$")


class Block:
    def __init__(self, path, line, lang, text, marker):
        self.path, self.line, self.lang, self.text, self.marker = path, line, lang, text, marker

    def where(self):
        return f"{self.path}:{self.line}"


def blocks_of(path, text):
    """The fenced blocks of a Markdown file, each with the marker before it."""
    out = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(1), i
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        if j == len(lines):
            raise SystemExit(f"{path}:{start + 1}: a code block that never ends")
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = MARKER.match(lines[k].strip()) if k >= 0 else None
        out.append(Block(path, start + 1, lang, "\n".join(lines[start + 1:j]) + "\n", marker))
        i = j + 1
    return out


def parse_marker(block):
    action = block.marker.group(1)
    opts = dict(kv.split("=", 1) for kv in block.marker.group(2).split())
    return action, opts


class Checker:
    def __init__(self, source, prefix, mpiexec):
        self.source, self.prefix, self.mpiexec = source, prefix, mpiexec
        self.harness_dir = os.path.join(source, "tests", "docs", "harness")
        self.work = tempfile.mkdtemp(prefix="tandem-docs-")
        self.projects = {}
        self.failures = []
        self.passed = 0
        self.env = dict(os.environ)
        self.env["PKG_CONFIG_PATH"] = os.path.join(prefix, "lib", "pkgconfig")
        # The Debian python3 (numpy and h5py from apt) before any other one.
        self.env["PATH"] = os.pathsep.join([os.path.join(prefix, "bin"), "/usr/bin",
                                            self.env["PATH"]])
        self.env["PYTHONPATH"] = os.path.join(prefix, "lib", "tandem", "python")
        self.stub = None

    # --- helpers --------------------------------------------------------------
    def sh(self, block, argv, cwd, what):
        env = dict(self.env)  # programs the block's directory provides come first
        env["PATH"] = os.path.join(cwd, "bin") + os.pathsep + env["PATH"]
        r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise CheckFailed(f"{what} failed (exit {r.returncode}): {' '.join(argv)}\n"
                              f"{r.stdout[-3000:]}{r.stderr[-3000:]}")
        return r.stdout

    def pkg(self, *args):
        return subprocess.run(["pkg-config", *args], env=self.env, capture_output=True,
                              text=True, check=True).stdout.split()

    def with_harness(self, block, opts):
        if "harness" not in opts:
            return block.text
        path = os.path.join(self.harness_dir, f"{opts['harness']}.{EXT[block.lang]}")
        with open(path) as f:
            harness = f.read().replace("@SOURCE@", self.source)
        if "@DOC@" not in harness:
            raise CheckFailed(f"{path} has no @DOC@ line")
        lines = harness.split("\n")
        at = next(i for i, l in enumerate(lines) if "@DOC@" in l)
        return "\n".join(lines[:at]) + "\n" + block.text + "\n".join(lines[at + 1:])

    def directory(self, opts):
        name = opts.get("project")
        if name is None:
            d = tempfile.mkdtemp(dir=self.work)
        else:
            d = self.projects.setdefault(name, os.path.join(self.work, "project-" + name))
            os.makedirs(d, exist_ok=True)
        for f in filter(None, opts.get("touch", "").split(",")):
            p = os.path.join(d, f)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            open(p, "a").close()
            os.chmod(p, 0o755)
        models = [os.path.join(d, m) for m in opts.get("models", "").split(",") if m]
        missing = [m for m in models if not os.path.exists(m)]
        if missing:
            subprocess.run(["/usr/bin/python3", os.path.join(self.harness_dir, "make_model.py"),
                            *missing], env=self.env, check=True, timeout=300)
        if "stub" in opts:
            self.make_stub(os.path.join(d, opts["stub"]))
        return d

    def make_stub(self, target):
        """The library harness/stub_tasks.cpp at @p target: the functions the
        docs' workflows name, for blocks that are not about writing them."""
        if self.stub is None:
            self.stub = os.path.join(self.work, "libstub.so")
            src = os.path.join(self.harness_dir, "stub_tasks.cpp")
            subprocess.run(["mpicxx", "-std=c++20", "-shared", "-fPIC", src, "-o", self.stub,
                            "-Wl,--no-undefined", *self.pkg("--cflags", "--libs", "tandem")],
                           env=self.env, check=True)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy(self.stub, target)

    # --- actions ----------------------------------------------------------------
    def check(self, block):
        if block.lang == "json":
            try:
                json.loads(block.text)
            except ValueError as e:
                raise CheckFailed(f"not JSON: {e}")
            return
        action, opts = parse_marker(block)
        handler = getattr(self, f"do_{action}", None)
        if handler is None:
            raise CheckFailed(f"unknown action '{action}'")
        handler(block, opts)

    def do_write(self, block, opts):
        if "project" not in opts or "file" not in opts:
            raise CheckFailed("write needs project= and file=")
        d = self.directory(opts)
        with open(os.path.join(d, opts["file"]), "w") as f:
            f.write(self.with_harness(block, opts))

    def do_compile(self, block, opts):
        d = self.directory(opts)
        text = self.with_harness(block, opts)
        src = os.path.join(d, opts.get("file", f"block-{block.line}.{EXT[block.lang]}"))
        with open(src, "w") as f:
            f.write(text)
        if block.lang == "python":
            self.sh(block, [sys.executable, "-m", "py_compile", src], d, "byte-compiling")
            return
        has_main = re.search(r"\b(int\s+main\s*\(|^\s*program\s+\w+)", text, re.M) is not None
        stem = os.path.splitext(os.path.basename(src))[0]
        out = os.path.join(d, stem + ("" if has_main else ".so"))
        shape = [] if has_main else ["-shared", "-fPIC"]
        if block.lang == "cpp":
            argv = ["mpicxx", "-std=c++20", "-Wall", "-Werror", *shape, src, "-o", out,
                    "-Wl,--no-undefined", *self.pkg("--cflags", "--libs", "tandem")]
        elif block.lang == "c":
            argv = ["mpicc", "-std=c11", "-Wall", "-Werror", *shape, src, "-o", out,
                    "-Wl,--no-undefined", *self.pkg("--cflags", "--libs", "tandem")]
        elif block.lang == "fortran":
            if shutil.which("gfortran") is None:
                return  # no Fortran compiler: the Fortran module is not installed either
            argv = ["gfortran", "-Wall", *shape, src, "-o", out,
                    *self.pkg("--cflags", "--libs", "tandem-fortran")]
        else:
            raise CheckFailed(f"cannot compile {block.lang}")
        self.sh(block, argv, d, "compiling")
        if has_main and "np" in opts:
            self.run_program(block, opts, d, out)

    def run_program(self, block, opts, d, exe):
        """An MPI program from the docs, run as they say: with np= ranks and
        args=; with too_few= ranks it must fail cleanly (a message, no
        uncaught exception); with report=1, `tandem report` reads its run."""
        args = opts.get("args", "").split(",") if opts.get("args") else []
        self.sh(block, [*self.mpiexec, "-n", opts["np"], exe, *args], d, "running")
        if "too_few" in opts:
            r = subprocess.run([*self.mpiexec, "-n", opts["too_few"], exe, *args], cwd=d,
                               env=self.env, capture_output=True, text=True, timeout=120)
            said = r.stdout + r.stderr
            if r.returncode == 0 or "terminate called" in said or "app:" not in said:
                raise CheckFailed(f"with {opts['too_few']} ranks it did not fail cleanly "
                                  f"(exit {r.returncode}):\n{said[-2000:]}")
        if opts.get("report") == "1":
            runs = os.path.join(d, "runs")
            newest = max((os.path.join(runs, x) for x in os.listdir(runs)), key=os.path.getmtime)
            out = self.sh(block, ["tandem", "report", newest], d, "tandem report")
            if "requests" not in out:
                raise CheckFailed(f"tandem report on {newest} says nothing of requests:\n{out}")

    def do_build(self, block, opts):
        if block.lang != "cmake" or "project" not in opts:
            raise CheckFailed("build is for a CMake block with project=")
        d = self.directory(opts)
        with open(os.path.join(d, "CMakeLists.txt"), "w") as f:
            f.write(self.with_harness(block, opts))
        self.sh(block, ["cmake", "-S", ".", "-B", "build", f"-DCMAKE_PREFIX_PATH={self.prefix}"],
                d, "configuring")
        self.sh(block, ["cmake", "--build", "build"], d, "building")

    def workflow_file(self, block, opts):
        d = self.directory(opts)
        path = os.path.join(d, opts.get("file", f"block-{block.line}.toml"))
        with open(path, "w") as f:
            f.write(self.with_harness(block, opts))
        return d, path

    def do_validate(self, block, opts):
        if block.lang != "toml":
            raise CheckFailed("validate is for TOML")
        d, path = self.workflow_file(block, opts)
        out = self.sh(block, ["tandem", "validate", path], d, "tandem validate")
        if ": OK:" not in out:
            raise CheckFailed(f"tandem validate did not say OK: {out}")

    def do_run(self, block, opts):
        if block.lang == "python":
            d = self.directory(opts)
            src = os.path.join(d, f"block-{block.line}.py")
            with open(src, "w") as f:
                f.write(self.with_harness(block, opts))
            if "np" in opts:
                self.sh(block, [*self.mpiexec, "-n", opts["np"], sys.executable, src], d,
                        "running")
            else:
                self.sh(block, [sys.executable, src], d, "running")
            return
        if block.lang != "toml":
            raise CheckFailed("run is for TOML or Python")
        d, path = self.workflow_file(block, opts)
        run_dir = os.path.join(d, opts.get("run_dir", f"run-{block.line}"))
        argv = [*self.mpiexec, "-n", opts.get("np", "3"), "tandem", "run", path, "--run-dir",
                run_dir, "--log-level", "warn"]
        self.sh(block, argv, d, "tandem run")

    def do_task(self, block, opts):
        """Python: the block as doc_block.py, a command task of the workflow
        harness/JOB.toml, run with mpirun; the task must succeed."""
        if block.lang != "python" or "job" not in opts:
            raise CheckFailed("task is for Python, with job=")
        d = self.directory(opts)
        with open(os.path.join(d, "doc_block.py"), "w") as f:
            f.write(self.with_harness(block, opts))
        with open(os.path.join(self.harness_dir, opts["job"] + ".toml")) as f:
            job = f.read().replace("@SOURCE@", self.source)
        path = os.path.join(d, "job.toml")
        with open(path, "w") as f:
            f.write(job)
        run_dir = os.path.join(d, f"run-{block.line}")
        argv = [*self.mpiexec, "-n", opts.get("np", "4"), "tandem", "run", path, "--run-dir",
                run_dir, "--log-level", "warn"]
        try:
            self.sh(block, argv, d, "tandem run")
        except CheckFailed as e:
            err = os.path.join(run_dir, "tasks", "block", "0.err")
            tail = open(err).read()[-2000:] if os.path.exists(err) else ""
            raise CheckFailed(f"{e}\nthe block's stderr:\n{tail}")

    def run(self, files):
        for path in files:
            with open(os.path.join(self.source, path)) as f:
                text = f.read()
            for block in blocks_of(path, text):
                if block.lang not in CHECKED and block.lang != "json":
                    continue
                if block.lang != "json" and block.marker is None:
                    self.failures.append(f"{block.where()}: a ```{block.lang} block with no "
                                         "<!-- check: ... --> marker before it")
                    continue
                try:
                    self.check(block)
                    self.passed += 1
                except CheckFailed as e:
                    self.failures.append(f"{block.where()}: {e}")
                except subprocess.TimeoutExpired as e:
                    self.failures.append(f"{block.where()}: timed out: {e}")
        for f in self.failures:
            print(f"FAIL: {f}", file=sys.stderr)
        print(f"docs: {self.passed} blocks passed, {len(self.failures)} failed")
        if not self.failures:
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            print(f"kept for inspection: {self.work}", file=sys.stderr)
        return 0 if not self.failures else 1


class CheckFailed(Exception):
    pass


def self_test():
    """The block finder sees markers, languages and the lines blocks start on."""
    text = ("intro\n\n<!-- check: compile harness=x -->\n```cpp\nint a;\n```\n\n"
            "```toml\n[job]\n```\n```json\n{}\n```\n")
    b = blocks_of("t.md", text)
    assert [x.lang for x in b] == ["cpp", "toml", "json"], b
    assert b[0].line == 4 and b[0].text == "int a;\n"
    assert parse_marker(b[0]) == ("compile", {"harness": "x"})
    assert b[1].marker is None
    try:
        blocks_of("t.md", "```c\nint a;\n")
    except SystemExit as e:
        assert "never ends" in str(e)
    else:
        raise AssertionError("an open block passed")
    print("self-test: ok")
    return 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    source, prefix, *mpiexec = sys.argv[1:]
    files = ["README.md"] + sorted(
        os.path.join("docs", f) for f in os.listdir(os.path.join(source, "docs"))
        if f.endswith(".md"))
    return Checker(source, prefix, mpiexec).run(files)


if __name__ == "__main__":
    sys.exit(main())
