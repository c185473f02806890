#!/usr/bin/python3
"""The seed paper's experiments on Tandem, in one command (issue 22):
bootstrap.py, latency.py and scaling.py with their defaults, into one
directory, about 11 minutes on the 2-core development machine.

  bench/paper/all.py --build build --out paper-out

Then docs/paper-reproduction.md's tables and plots can be read from
paper-out/bootstrap.json, latency.json, scaling.json and the SVG files.
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default="paper-out")
    args = ap.parse_args()
    for script in ("bootstrap.py", "latency.py", "scaling.py"):
        print(f"== {script}", flush=True)
        subprocess.run([sys.executable, os.path.join(HERE, script), "--build", args.build,
                        "--out", args.out], check=True)
    print(f"written: {os.path.abspath(args.out)}")


if __name__ == "__main__":
    main()
