"""`python -m harness.llama_server ...`: llama-cpp-python's OpenAI-compatible server with safe buffer settings.

Takes the same arguments as `python -m llama_cpp.server` and binds to
127.0.0.1 unless --host says otherwise.
"""

from __future__ import annotations

import runpy
import sys

from harness.llama_runtime import extra_buffers_decision, model_params_override


def main() -> None:
    if "--host" not in sys.argv:
        sys.argv += ["--host", "127.0.0.1"]
    keep, _ = extra_buffers_decision()
    if keep:
        runpy.run_module("llama_cpp.server", run_name="__main__")
        return
    with model_params_override(use_extra_bufts=False):
        runpy.run_module("llama_cpp.server", run_name="__main__")


if __name__ == "__main__":
    main()
