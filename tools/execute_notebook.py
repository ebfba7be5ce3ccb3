"""Re-execute chapters in full mode and store their outputs, the way the published book shows them.

    python tools/execute_notebook.py notebooks/07_sampling.ipynb [more notebooks] [--quick]

Each notebook runs with nbclient in its own folder, without ``DDPM_QUICK`` (full mode) unless
``--quick`` is given (for trying a change; never commit quick-mode outputs). Afterwards:

* TensorFlow's C++ start-up lines, which it writes to stderr before its logging is set up (so
  ``TF_CPP_MIN_LOG_LEVEL`` cannot hide them), are removed from the stored outputs;
* the outputs are audited: an error, any other stderr text, or a path of this machine in an
  output is reported, and the script exits with status 1.
"""
import argparse
import os
import re
import sys
import time

import nbformat
from nbclient import NotebookClient

# Only the start-up messages themselves (named by their source file); any other log line, such
# as a runtime warning, stays in the output and is reported by the audit.
TF_STARTUP_LINE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWEF]\d{4} [\d:.]+\s+\d+ (port|cudart_stub|cpu_feature_guard|cuda_platform|cuda_diagnostics"
    r"|cuda_executor|dso_loader)\.cc:\d+\] .*"
    r"|To enable the following instructions: .*in other operations, rebuild TensorFlow .*)$")
MACHINE_PATHS = ("/tmp/", "/work/", "/root/", "/home/")


def strip_tf_startup(nb):
    """Remove TensorFlow's start-up lines from stderr outputs; return how many were removed."""
    removed = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                lines = out["text"].splitlines(keepends=True)
                rest = [ln for ln in lines if not TF_STARTUP_LINE.match(ln.rstrip("\n"))]
                removed += len(lines) - len(rest)
                if not "".join(rest).strip():
                    continue
                out["text"] = "".join(rest)
            if (kept and out.get("output_type") == "stream" and kept[-1].get("output_type") == "stream"
                    and kept[-1].get("name") == out.get("name")):
                kept[-1]["text"] += out["text"]          # merge neighbouring stream outputs
            else:
                kept.append(out)
        cell["outputs"] = kept
    return removed


def audit(nb):
    """Problems a reader of the published book would see."""
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "error":
                problems.append(f"cell {i}: error {out.get('ename')}: {out.get('evalue')}")
            if kind == "stream" and out.get("name") == "stderr":
                problems.append(f"cell {i}: stderr {out['text'][:200]!r}")
            texts = [out.get("text", "")] + [v if isinstance(v, str) else "".join(v)
                                             for k, v in out.get("data", {}).items()
                                             if k.startswith("text/")]
            for p in MACHINE_PATHS:
                if any(p in t for t in texts):
                    problems.append(f"cell {i}: a path of this machine ({p}) in an output")
    return problems


def execute(path, quick=False, timeout=7200):
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ)
    os.environ.pop("DDPM_QUICK", None)
    os.environ.pop("MPLBACKEND", None)        # a non-inline backend would drop every figure
    if quick:
        os.environ["DDPM_QUICK"] = "1"
    try:
        t0 = time.time()
        # allow_errors: a failing cell is stored as an error output and reported by the audit,
        # and the remaining cells and notebooks still run
        NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}}).execute()
        wall = time.time() - t0
    finally:
        os.environ.clear()
        os.environ.update(env)
    removed = strip_tf_startup(nb)
    nbformat.write(nb, path)
    return wall, removed, audit(nb)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("notebooks", nargs="+")
    p.add_argument("--quick", action="store_true", help="quick mode (DDPM_QUICK=1), for trying things")
    p.add_argument("--timeout", type=int, default=7200, help="seconds per cell")
    args = p.parse_args(argv)
    failed = False
    for path in args.notebooks:
        wall, removed, problems = execute(path, args.quick, args.timeout)
        print(f"{path}: {'quick' if args.quick else 'full'} mode, {wall:.0f} s; "
              f"{removed} TensorFlow start-up lines removed; problems: {problems or 'none'}", flush=True)
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
