"""Warm worker: run ``ftft`` commands in forks of one process that has imported the stack.

Every ``ftft`` job of a local Snakemake run is a new Python process that imports torch,
transformers, pandas and matplotlib before doing any work: 5-8 s per job on a 2-core machine,
more than a demo training run itself (the demo has 68 of them). With ``worker.enabled`` in the
config, the Snakefile starts one worker when the run starts (``onstart``) and stops it at the
end. Each ``ftft`` command then connects to the worker's Unix socket and hands over its
arguments, working directory, environment and stdin/stdout/stderr. The worker forks a child
that runs the command exactly as :func:`ftft.cli.main` would, with the modules already imported.
The client waits for the child's exit status and forwards SIGINT/SIGTERM/SIGHUP to it, so
Snakemake sees an ordinary job: same log file, same exit code, same outputs.

The client runs the command itself when the worker cannot serve it: no socket configured or
reachable, a SLURM job (the work must run inside the job's allocation), or a different Python
environment or import-time environment variables (``HF_*``, ``CUDA_*`` ...) than the worker's.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOCKET_ENV = "FTFT_WORKER"  # path of the worker's socket; set by the Snakefile's onstart
# environment variables that modules read when they are imported: a child inherits the worker's
# values of these, so a client whose values differ is refused (and runs the command itself)
IMPORT_ENV_PREFIXES = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TOKENIZERS_", "TORCH", "CUDA_", "OMP_", "MKL_", "MPL")
# thread counts are the exception: Snakemake sets them per job (= the rule's threads); the worker
# imports with 1 thread and each child applies its job's count (see _apply_threads)
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# what the worker imports once, before it accepts commands (the heavy part of every job)
PRELOAD = (
    "torch",
    "transformers",
    "transformers.models.auto.modeling_auto",
    "transformers.models.bert.modeling_bert",
    "transformers.models.deberta_v2.modeling_deberta_v2",
    "transformers.models.electra.modeling_electra",
    "transformers.models.roberta.modeling_roberta",
    "accelerate",
    "pandas",
    "pyarrow.parquet",
    "scipy.stats",
    "ftft.train.engine",
    "ftft.train.cli",
    "ftft.models",
    "ftft.datamap",
    "ftft.subsets",
    "ftft.tables",
    "ftft.figures",
    "ftft.compare",
    "ftft.data.demo",
    "ftft.data.assemble",
)
_HEADER = struct.Struct("!I")
_STARTED: dict[str, subprocess.Popen] = {}  # socket path -> worker process, for stop()


def _import_env(env) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(IMPORT_ENV_PREFIXES) and k not in THREAD_ENV}


def _apply_threads(env) -> None:
    """Give torch the job's thread count (OMP_NUM_THREADS, set by Snakemake); default 1."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(max(1, int(env.get("OMP_NUM_THREADS") or 1)))


# ---------------------------------------------------------------------------------------------
# Wire format: request = 4-byte length + JSON, with the client's fds 0/1/2 attached;
# replies = JSON lines from the child: {"pid": n} or {"refused": why}, then {"rc": k}.
# ---------------------------------------------------------------------------------------------


def _std_fds() -> list[int]:
    """The client's stdin/stdout/stderr; /dev/null for any that is closed."""
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            fd = os.open(os.devnull, os.O_RDWR)
        fds.append(fd)
    return fds


def _send_request(sock: socket.socket, request: dict) -> None:
    payload = json.dumps(request).encode()
    socket.send_fds(sock, [_HEADER.pack(len(payload))], _std_fds())
    sock.sendall(payload)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            raise ConnectionError("client closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _recv_request(sock: socket.socket) -> tuple[dict, list[int]]:
    head, fds, _flags, _addr = socket.recv_fds(sock, _HEADER.size, 3)
    if len(head) < _HEADER.size:
        head += _recv_exact(sock, _HEADER.size - len(head))
    (length,) = _HEADER.unpack(head)
    return json.loads(_recv_exact(sock, length)), fds


def _reply(sock: socket.socket, **message) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


# ---------------------------------------------------------------------------------------------
# Client (called first thing by ftft.cli.main)
# ---------------------------------------------------------------------------------------------


def call(argv: list[str]) -> int | None:
    """Run ``ftft argv`` in the worker and return its exit status; None to run it here."""
    path = os.environ.get(SOCKET_ENV)
    if not path or os.environ.get("SLURM_JOB_ID"):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "prefix": sys.prefix}
        _send_request(sock, request)
        replies = sock.makefile("rb")
        first = replies.readline()
    except OSError:
        sock.close()
        return None
    with sock:
        hello = json.loads(first) if first else {}
        if "pid" not in hello:  # refused, or the worker went away before forking
            why = hello.get("refused", "the worker closed the connection")
            print(f"ftft: warm worker not used ({why}); running here", file=sys.stderr)
            return None
        pid = hello["pid"]

        def forward(signum, _frame):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, forward)
        last = replies.readline()
    if not last:
        print(f"ftft: worker child {pid} ended without an exit status (killed?)", file=sys.stderr)
        return 1
    return int(json.loads(last)["rc"])


# ---------------------------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------------------------


def _exit_when_client_goes(conn: socket.socket) -> None:
    """Child watchdog: the client never writes after its request, so EOF means it died."""
    try:
        conn.recv(1)
    except OSError:
        pass
    os._exit(143)


def _serve_one(conn: socket.socket, listener: socket.socket, import_env: dict) -> None:
    """In the forked child: become the client's ``ftft`` process, run the command, exit.

    ``import_env``: the worker's import-time variables as they were before it preloaded."""
    import threading

    listener.close()
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        request, fds = _recv_request(conn)
        if request["prefix"] != sys.prefix:
            _reply(conn, refused=f"python environment {request['prefix']} != worker's {sys.prefix}")
            os._exit(0)
        differ = sorted(
            k for k in {*import_env, *_import_env(request["env"])} if import_env.get(k) != request["env"].get(k)
        )
        if differ:
            _reply(conn, refused=f"environment variables read at import differ from the worker's: {', '.join(differ)}")
            os._exit(0)
        for target, fd in zip((0, 1, 2), fds, strict=True):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.pop(SOCKET_ENV, None)
        _apply_threads(os.environ)
        _reply(conn, pid=os.getpid())
    except (OSError, ValueError, KeyError):
        os._exit(1)
    threading.Thread(target=_exit_when_client_goes, args=(conn,), daemon=True).start()
    os._exit(_run_command(request["argv"], conn))


def _run_command(argv: list[str], conn: socket.socket) -> int:
    import logging
    import traceback

    from .cli import main

    logging.getLogger().handlers.clear()  # the child logs to the client's stderr, as usual
    sys.argv = ["ftft", *argv]
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - report like an uncaught exception would
        traceback.print_exc()
        rc = 1
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        _reply(conn, rc=rc)
    except OSError:
        pass
    return rc


def _preload(log) -> None:
    import importlib

    t0 = time.perf_counter()
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # an optional module: the child imports what it needs
            log(f"preload: {name} not imported ({exc})")
    from .modeling import silence_transformers

    silence_transformers()
    log(f"preloaded {len(PRELOAD)} modules in {time.perf_counter() - t0:.1f} s")


def _reap(children: dict[int, float], log) -> None:
    """Collect the children that have exited (pid -> start time) and log their status."""
    for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            took = time.monotonic() - children.pop(pid)
            log(f"child {pid} exited {os.waitstatus_to_exitcode(status)} after {took:.1f} s")


def serve(path: str | Path, idle_timeout: float = 600.0, preload: bool = True) -> int:
    """Listen on ``path``; fork a child per connection. Returns when stopped (SIGTERM), after
    ``idle_timeout`` seconds without commands, or when the process that started it is gone."""
    path = Path(path)

    def log(msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} ftft worker[{os.getpid()}]: {msg}", flush=True)

    def stop(_signum, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))  # bind first: clients queue while the modules load
    os.chmod(path, 0o600)
    listener.listen(128)
    pidfile = path.with_name(path.name + ".pid")
    pidfile.write_text(str(os.getpid()))
    parent, children, served, last = os.getppid(), {}, 0, time.monotonic()
    import_env = _import_env(os.environ)  # before the imports (some set variables, e.g. TORCHINDUCTOR_*)
    log(f"listening on {path}")
    try:
        if preload:
            _preload(log)
        while True:
            ready, _, _ = select.select([listener], [], [], 1.0)
            if ready:
                conn, _ = listener.accept()
                pid = os.fork()
                if pid == 0:
                    _serve_one(conn, listener, import_env)
                conn.close()
                log(f"child {pid} started")
                children[pid] = time.monotonic()
                served += 1
            _reap(children, log)
            if children or ready:
                last = time.monotonic()
            elif idle_timeout and time.monotonic() - last > idle_timeout:
                log(f"idle for {idle_timeout:.0f} s; stopping")
                break
            if os.getppid() != parent:
                log("the process that started the worker is gone; stopping")
                break
    finally:
        listener.close()
        _reap(children, log)
        for pid in children:  # commands still running: their clients are gone or going
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        while children and time.monotonic() < deadline:
            time.sleep(0.05)
            _reap(children, log)
        log(f"stopped after serving {served} commands")
        path.unlink(missing_ok=True)  # last: stop() waits for the socket to go
        pidfile.unlink(missing_ok=True)
        if path.parent.name.startswith("ftft-worker-"):  # made by start()
            shutil.rmtree(path.parent, ignore_errors=True)
    return 0


# ---------------------------------------------------------------------------------------------
# Start / stop (the Snakefile's onstart / onsuccess / onerror)
# ---------------------------------------------------------------------------------------------


def start(log_path: str | Path, idle_timeout: float = 600.0, preload: bool = True, wait_s: float = 10.0) -> str | None:
    """Start a worker in the background; return its socket path (None if it did not come up)."""
    path = Path(tempfile.mkdtemp(prefix="ftft-worker-")) / "sock"
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != SOCKET_ENV}
    env.update(dict.fromkeys(THREAD_ENV, "1"))  # BLAS/OpenMP pools sized at import: 1 thread
    src = str(Path(__file__).resolve().parents[1])  # ftft importable as in this process
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "ftft.cli", "worker", "--socket", str(path), "--idle-timeout", str(idle_timeout)]
    cmd += [] if preload else ["--no-preload"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True)
    _STARTED[str(path)] = proc
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists():
            return str(path)
        time.sleep(0.05)
    stop(path)
    return None


def stop(path: str | Path | None, wait_s: float = 10.0) -> None:
    """Stop the worker listening on ``path`` (if any) and remove its folder."""
    if not path:
        return
    path = Path(path)
    proc = _STARTED.pop(str(path), None)
    if proc is not None:  # started here: stop it and wait for it (no zombie left)
        proc.terminate()
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return
    try:
        os.kill(int(path.with_name(path.name + ".pid").read_text()), signal.SIGTERM)
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + wait_s
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# ftft worker
# ---------------------------------------------------------------------------------------------


def add_arguments(parser) -> None:
    parser.add_argument("--socket", required=True, help="Unix socket path to listen on")
    parser.add_argument(
        "--idle-timeout", type=float, default=600.0, help="stop after this many idle seconds (0: never)"
    )
    parser.add_argument("--no-preload", action="store_true", help="do not import the stack up front")


def run(args) -> int:
    return serve(args.socket, args.idle_timeout, preload=not args.no_preload)
