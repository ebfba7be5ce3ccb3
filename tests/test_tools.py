"""tools/execute_notebook.py: what it strips from stored outputs and what it reports."""
import os
import sys

import nbformat

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
from execute_notebook import audit, strip_tf_startup  # noqa: E402

STARTUP = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1795566699.271942    2998 port.cc:153] oneDNN custom operations are on.\n"
    "E0000 00:00:1795567579.551904    4721 cuda_platform.cc:52] failed call to cuInit: UNKNOWN\n"
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with "
    "the appropriate compiler flags.\n")


def notebook(*outputs):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x = 1")
    cell.outputs = [nbformat.v4.new_output(**o) for o in outputs]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), cell]
    return nb


def test_strip_removes_only_tensorflow_startup_lines():
    nb = notebook(dict(output_type="stream", name="stdout", text="a\n"),
                  dict(output_type="stream", name="stderr", text=STARTUP),
                  dict(output_type="stream", name="stdout", text="b\n"),
                  dict(output_type="stream", name="stderr", text=STARTUP + "a real warning\n"))
    assert strip_tf_startup(nb) == 8
    outs = nb.cells[1].outputs
    assert [(o.name, o.text) for o in outs] == [("stdout", "a\nb\n"), ("stderr", "a real warning\n")]
    assert audit(nb) == ["cell 1: stderr 'a real warning\\n'"]


def test_strip_keeps_other_log_lines():
    runtime = "W0000 00:00:1795566699.27 2998 bfc_allocator.cc:310] Allocator ran out of memory\n"
    nb = notebook(dict(output_type="stream", name="stderr", text=STARTUP + runtime))
    assert strip_tf_startup(nb) == 4
    assert nb.cells[1].outputs[0].text == runtime
    assert len(audit(nb)) == 1


def test_audit_reports_errors_and_machine_paths():
    nb = notebook(dict(output_type="stream", name="stdout", text="saved to /tmp/x.gif\n"),
                  dict(output_type="error", ename="ValueError", evalue="bad", traceback=[]),
                  dict(output_type="display_data", data={"text/plain": "/work/main/a.png"}))
    problems = audit(nb)
    assert problems == ["cell 1: a path of this machine (/tmp/) in an output",
                        "cell 1: error ValueError: bad",
                        "cell 1: a path of this machine (/work/) in an output"]
    clean = notebook(dict(output_type="stream", name="stdout", text="all good\n"))
    assert strip_tf_startup(clean) == 0 and audit(clean) == []
