"""``python -m ddpm_lib`` (and the ``ddpm`` command): see ``ddpm_lib.cli``.

TensorFlow's C++ core writes log lines straight to the process's standard error when it starts
and when it first looks for devices (CUDA probing on a machine without a GPU, oneDNN notices).
``TF_CPP_MIN_LOG_LEVEL`` no longer hides all of them (TensorFlow >= 2.19 logs some before reading
it). So, unless ``--debug`` is given, the command line sends file descriptor 2 to the null device
and gives Python's ``sys.stderr`` (its own errors, warnings, progress bars) a copy of the real
standard error: what the command says stays visible, TensorFlow's C++ lines do not.
"""
import os
import sys


def quiet_tensorflow():
    """Hide TensorFlow's C++ log lines for the rest of this process; Python's stderr still works."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    real_stderr = os.dup(2)
    sys.stderr = os.fdopen(real_stderr, "w", buffering=1, encoding=sys.stderr.encoding,
                           errors=sys.stderr.errors)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def run(argv=None):
    """Run ``ddpm_lib.cli.main`` (TensorFlow quieted unless ``--debug``); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--debug" not in argv:
        quiet_tensorflow()
    from .cli import main            # imports TensorFlow
    return main(argv)


if __name__ == "__main__":
    sys.exit(run())
