"""A fake verifier for the benchmark runner's tests: what it does is named by the property
file's stem (``sat_valid.vnnlib`` -> ``sat_valid``). Usage:
``python fake_tool.py ONNX VNNLIB TIMEOUT RESULT``; each call is logged to ``$FAKE_LOG``."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def main() -> None:
    _onnx, vnnlib, _timeout, result = sys.argv[1:5]
    behaviour = Path(vnnlib).name.split(".")[0]
    log = os.environ.get("FAKE_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(f"{behaviour}\n")
    out = Path(result)
    if behaviour == "sat_valid":
        out.write_text("sat\n((X_0 0.8)\n (Y_0 0.8))\n")
    elif behaviour == "sat_forged":
        out.write_text("sat\n((X_0 0.2)\n (Y_0 0.9))\n")  # onnxruntime gives 0.2 there, and 0.2 < 0.5
    elif behaviour == "unsat":
        out.write_text("unsat\n")
    elif behaviour == "unknown":
        out.write_text("unknown\n")
    elif behaviour.startswith("slow"):
        time.sleep(1.0)
        out.write_text("unsat\n")
    elif behaviour == "hang":
        time.sleep(3600)
    elif behaviour == "crash":
        os.abort()
    elif behaviour == "garbage":
        print("Traceback? no: just noise", flush=True)
        out.write_text("maybe-sat-who-knows\n")
    elif behaviour == "kill_parent":  # only under Ray: the parent is the Ray worker running the task
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(30)
    elif behaviour == "memory":
        hog = bytearray(4 * 1024**3)  # refused under --memory-mb
        out.write_text(f"unsat {len(hog)}\n")
    else:
        raise SystemExit(f"fake tool: no behaviour {behaviour!r}")


if __name__ == "__main__":
    main()
