"""Read a model file in a child process, so that libhdf5 crashing or hanging on it cannot take the caller down.

Python cannot stop a segmentation fault or an endless loop inside a C library.
:func:`validate` therefore runs :func:`lrp_ref.io.load` in a fresh interpreter
(``sys.executable``, not a fork: nothing of the caller's state is shared) with
a wall-clock timeout, an address-space limit (``RLIMIT_AS``) and no core dumps,
and turns every way the child can fail into a
:class:`~lrp_ref.errors.ModelFormatError` naming the file:

* the child's own refusal (its message is passed on);
* death by a signal (``SIGSEGV``, ``SIGABRT``, ``SIGBUS``...): a crash inside libhdf5;
* the timeout: the child is killed;
* ``MemoryError`` under the address-space limit.

The request goes to the child on stdin and the answer comes back as one JSON
line on stdout; nothing is pickled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from .errors import LrpRefError, ModelFormatError

__all__ = ["validate"]

_CHILD = "from lrp_ref._sandbox import child_main; child_main()"
#: The child computes nothing: one BLAS thread keeps its address space small.
_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def validate(path: Path, limits: dict[str, int], timeout: float, memory: int) -> dict[str, Any]:
    """Run ``load(path, **limits)`` in a child process; return its summary or raise :class:`ModelFormatError`.

    The summary has ``layers``, ``parameters``, ``dtype`` and ``input_shape`` (or None).
    """
    env = dict(os.environ, **dict.fromkeys(_THREADS, "1"))
    package_root = str(Path(__file__).resolve().parent.parent)  # the child imports this very lrp_ref
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    request = json.dumps({"path": str(path), "limits": limits, "memory": memory})
    if not sys.executable:
        raise ModelFormatError(f"{path}: cannot validate in a child process: no Python executable (sys.executable)")
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD], input=request, capture_output=True, text=True,
                              timeout=timeout, env=env, check=False, errors="replace")
    except subprocess.TimeoutExpired:
        raise ModelFormatError(f"{path}: reading the file did not finish within {timeout:g} s (in a child process, "
                               "now killed); the file is probably corrupted or hostile") from None
    if proc.returncode < 0:
        sig = _signal_name(-proc.returncode)
        cause = ("perhaps the system ran out of memory" if sig == "SIGKILL"
                 else "a crash inside the HDF5 library: the file is corrupted or hostile")
        raise ModelFormatError(f"{path}: the process reading the file died of signal {sig} ({cause})")
    lines = proc.stdout.strip().splitlines()
    try:
        reply = json.loads(lines[-1]) if lines else None
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        tail = " ".join(proc.stderr.strip().splitlines()[-1:])[:300] or "no output"
        raise ModelFormatError(f"{path}: the process reading the file exited with status {proc.returncode} "
                               f"without a report: {tail}")
    if reply.get("missing"):
        raise FileNotFoundError(2, "No such lrp_ref model file", str(path))
    if not reply.get("ok"):
        raise ModelFormatError(str(reply.get("message")))
    return reply


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"number {number}"


def child_main() -> None:
    """Entry point of the child: read the request, set the limits, load, answer with one JSON line."""
    request = json.loads(sys.stdin.read())
    memory = int(request["memory"])
    try:
        import resource  # POSIX only; elsewhere the timeout still holds

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = memory if hard == resource.RLIM_INFINITY else min(memory, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):
        pass
    from .io import load

    reply: dict[str, Any]
    try:
        model = load(request["path"], **request["limits"])
        shape = model.metadata.get("input_shape")
        reply = {"ok": True, "layers": len(model), "parameters": model.n_parameters(), "dtype": model.dtype.name,
                 "input_shape": list(shape) if shape else None}
    except FileNotFoundError as exc:
        reply = {"ok": False, "missing": True, "message": str(exc)}
    except (LrpRefError, MemoryError) as exc:
        message = str(exc) if isinstance(exc, LrpRefError) else f"{request['path']}: MemoryError"
        if _memory_error(exc):
            message += f" (the reading process was limited to {memory} bytes of address space)"
        reply = {"ok": False, "message": message}
    except Exception as exc:  # anything else is still a refusal of this file, reported as such
        reply = {"ok": False, "message": f"{request['path']}: {type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()


def _memory_error(exc: BaseException | None) -> bool:
    for _ in range(20):
        if exc is None:
            return False
        if isinstance(exc, MemoryError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
