"""Warm worker: run ``ftft`` commands in forks of one process that has imported the stack.

Every ``ftft`` job of a local Snakemake run is a new Python process that imports torch,
transformers and pandas before doing any work: 5-8 s per job on a 2-core machine, more than a
demo training run itself (the demo has 68 of them). With ``worker.enabled`` in the config, the
Snakefile starts one worker when the run starts (``onstart``) and stops it at the end.

Each ``ftft`` command then connects to the worker's Unix socket and hands over its arguments,
working directory, environment, umask and stdin/stdout/stderr. The worker checks that it may
serve it, forks a child that becomes the command (client's fds, cwd, environment, thread
count) and runs it exactly as :func:`ftft.cli.main` would, with the modules already imported.
The worker supervises the child: it sends the client the child's pid and, when the child
exits, its exit status; if the client goes away first (killed), it terminates the child.
The client forwards SIGINT/SIGTERM/SIGHUP to the child. Snakemake thus sees an ordinary job:
same log file, exit status and outputs.

The client runs the command itself when the worker cannot serve it: no socket configured or
reachable, no answer within ``CONNECT_TIMEOUT_S``, a SLURM job (the work must run inside the
job's allocation), another Python environment or ``ftft`` installation, or import-time
environment variables (``HF_*``, ``CUDA_*`` ...) that differ from the worker's.
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
CONNECT_TIMEOUT_S = 120.0  # for the worker to take a command (it may still be preloading)
# environment variables that modules read when they are imported: a child inherits the worker's
# values of these, so a client whose values differ is refused (and runs the command itself)
IMPORT_ENV_PREFIXES = (
    "HF_",
    "HUGGINGFACE_",
    "TRANSFORMERS_",
    "TOKENIZERS_",
    "TORCH",
    "PYTORCH_",
    "CUDA_",
    "OMP_",
    "KMP_",
    "GOMP_",
    "MKL_",
    "OPENBLAS_",
    "ARROW_",
    "MPL",
)
IMPORT_ENV_NAMES = ("HOME", "XDG_CACHE_HOME", "PYTHONHASHSEED")
# thread counts are the exception: Snakemake sets them per job (= the rule's threads); the worker
# imports with 1 thread and each child gives torch its job's count (_become)
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# what the worker imports once, before it takes commands (the heavy part of every job)
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
    return {
        k: v
        for k, v in env.items()
        if (k.startswith(IMPORT_ENV_PREFIXES) or k in IMPORT_ENV_NAMES) and k not in THREAD_ENV
    }


def _package_dir() -> str:
    return str(Path(__file__).resolve().parent)


def _exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128 + signal number."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


# ---------------------------------------------------------------------------------------------
# Wire format: request = 4-byte length + JSON, with the client's fds 0/1/2 attached;
# replies = JSON lines from the worker: {"pid": n} or {"refused": why}, then {"rc": k}.
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
    if socket.send_fds(sock, [_HEADER.pack(len(payload))], _std_fds()) != _HEADER.size:
        raise ConnectionError("short write of the request header")
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
    """The request and the fds that came with it (the caller closes them)."""
    head, fds, _flags, _addr = socket.recv_fds(sock, _HEADER.size, 3)
    try:
        if len(head) < _HEADER.size:
            head += _recv_exact(sock, _HEADER.size - len(head))
        (length,) = _HEADER.unpack(head)
        request = json.loads(_recv_exact(sock, length))
        if (
            len(fds) != 3
            or not isinstance(request.get("argv"), list)
            or not isinstance(request.get("env"), dict)
            or not isinstance(request.get("cwd"), str)
        ):
            raise ValueError("malformed request")
        if not all(isinstance(v, str) for v in [*request["argv"], *request["env"], *request["env"].values()]):
            raise ValueError("malformed request")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return request, fds


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
    from .io import current_umask

    request = {
        "argv": argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "umask": current_umask(),
        "prefix": sys.prefix,
        "package": _package_dir(),
    }
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT_S)
    try:
        sock.connect(path)
        _send_request(sock, request)
        replies = sock.makefile("rb")
        hello = json.loads(replies.readline() or b"{}")
    except (OSError, ValueError) as exc:
        sock.close()
        if not isinstance(exc, FileNotFoundError):  # no socket: no worker (any more)
            print(f"ftft: warm worker not used ({exc}); running here", file=sys.stderr)
        return None
    if "pid" not in hello:  # refused, or the worker went away
        sock.close()
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
    sock.settimeout(None)  # a command runs as long as it needs
    with sock:
        last = replies.readline()
    if not last:
        print(f"ftft: warm worker stopped before command {pid} finished", file=sys.stderr)
        return 1
    return int(json.loads(last)["rc"])


# ---------------------------------------------------------------------------------------------
# The child: becomes the client's `ftft` process
# ---------------------------------------------------------------------------------------------


def _become(request: dict, fds: list[int]) -> None:
    """Take over the client's fds, cwd, environment, umask and thread count."""
    for target, fd in zip((0, 1, 2), fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.umask(int(request.get("umask", 0o022)))
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ.pop(SOCKET_ENV, None)
    tempfile.tempdir = None  # the job's TMPDIR, not the worker's cached one
    sys.argv = ["ftft", *request["argv"]]
    torch = sys.modules.get("torch")
    if torch is not None:  # numpy's BLAS stays at the worker's 1 thread
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS") or 1)))


def _run_command(argv: list[str]) -> int:
    import logging
    import traceback

    from .cli import main

    logging.getLogger().handlers.clear()  # the command logs to the client's stderr, as usual
    try:
        rc = main(argv)
    except SystemExit as exc:  # as the interpreter reports it
        if exc.code is None or isinstance(exc.code, int):
            rc = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            rc = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        rc = 128 + signal.SIGINT
    except BaseException:  # noqa: BLE001 - reported like an uncaught exception
        traceback.print_exc()
        rc = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass
    return rc


def _child(request: dict, fds: list[int], sockets: list, pipe_fds: list[int], saved_mask) -> None:
    """In the forked child; never returns."""
    rc = 1
    try:
        signal.set_wakeup_fd(-1)
        for sock in sockets:  # the listener, this and other clients' connections
            sock.close()
        for fd in pipe_fds:  # the worker's wake-up pipe
            os.close(fd)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, saved_mask)
        _become(request, fds)
        rc = _run_command(request["argv"])
    except BaseException:  # noqa: BLE001 - never fall back into the worker's loop
        try:
            import traceback

            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(rc)


# ---------------------------------------------------------------------------------------------
# The worker
# ---------------------------------------------------------------------------------------------


class _Worker:
    def __init__(self, path: Path, idle_timeout: float, preload: bool):
        self.path, self.idle_timeout, self.preload = path, idle_timeout, preload
        self.import_env = _import_env(os.environ)  # before the imports (torch sets TORCHINDUCTOR_*)
        self.children: dict[int, dict] = {}  # pid -> {"conn", "start", "argv"}
        self.served = 0
        self.stopping = False

    def log(self, msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} ftft worker[{os.getpid()}]: {msg}", flush=True)

    def refusal(self, request: dict) -> str | None:
        if request.get("prefix") != sys.prefix:
            return f"python environment {request.get('prefix')} is not the worker's {sys.prefix}"
        if request.get("package") != _package_dir():
            return f"ftft package {request.get('package')} is not the worker's {_package_dir()}"
        theirs = _import_env(request["env"])
        differ = sorted(k for k in {*self.import_env, *theirs} if self.import_env.get(k) != theirs.get(k))
        if differ:
            return f"environment variables read at import differ from the worker's: {', '.join(differ)}"
        return None

    def take(self, conn: socket.socket) -> None:
        """Read one request; refuse it or fork its child and tell the client the pid."""
        conn.settimeout(10.0)
        try:
            request, fds = _recv_request(conn)
        except (OSError, ValueError) as exc:
            self.log(f"bad request: {exc}")
            conn.close()
            return
        why = self.refusal(request)
        if why:
            for fd in fds:
                os.close(fd)
            self.log(f"refused: {why}")
            try:
                _reply(conn, refused=why)
            except OSError:
                pass
            conn.close()
            return
        saved = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGCHLD})
        try:
            pid = os.fork()
        except OSError as exc:  # e.g. out of memory: the client runs the command itself
            signal.pthread_sigmask(signal.SIG_SETMASK, saved)
            for fd in fds:
                os.close(fd)
            conn.close()
            self.log(f"fork failed: {exc}")
            return
        if pid == 0:
            others = [c["conn"] for c in self.children.values() if c["conn"] is not None]
            _child(request, fds, [self.listener, conn, *others], [self.wake_r, self.wake_w], saved)
        for fd in fds:
            os.close(fd)
        self.children[pid] = {"conn": conn, "start": time.monotonic()}
        self.served += 1
        signal.pthread_sigmask(signal.SIG_SETMASK, saved)
        self.log(f"child {pid} started: ftft {' '.join(request['argv'][:1])}")
        try:
            _reply(conn, pid=pid)
        except OSError:  # the client is gone already
            self.client_gone(pid)

    def client_gone(self, pid: int) -> None:
        child = self.children[pid]
        if child["conn"] is not None:
            child["conn"].close()
            child["conn"] = None
            self.log(f"child {pid}: client gone; terminating it")
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def reap(self) -> None:
        for pid in list(self.children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if not done:
                continue
            child = self.children.pop(pid)
            rc = _exit_code(status)
            self.log(f"child {pid} exited {rc} after {time.monotonic() - child['start']:.1f} s")
            if child["conn"] is not None:
                try:
                    _reply(child["conn"], rc=rc)
                except OSError:
                    pass
                child["conn"].close()

    def run(self) -> None:
        self.path.unlink(missing_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.path))  # bind first: clients queue while the modules load
        os.chmod(self.path, 0o600)
        self.listener.listen(128)
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self.wake_w)  # SIGCHLD / SIGTERM wake the select below

        def stop(_signum, _frame):
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGHUP, stop)
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)
        parent, last = os.getppid(), time.monotonic()
        self.log(f"listening on {self.path}")
        try:
            if self.preload:
                _preload(self.log)
            while not self.stopping:
                conns = {c["conn"]: pid for pid, c in self.children.items() if c["conn"] is not None}
                ready, _, _ = select.select([self.listener, self.wake_r, *conns], [], [], 1.0)
                if self.wake_r in ready:
                    while True:
                        try:
                            if not os.read(self.wake_r, 512):
                                break
                        except BlockingIOError:
                            break
                self.reap()
                for conn in ready:
                    if conn in conns and conns[conn] in self.children:
                        self.client_gone(conns[conn])  # clients send nothing more: EOF or error
                if self.listener in ready:
                    try:
                        conn, _ = self.listener.accept()
                    except OSError as exc:  # e.g. out of fds: that client runs its command itself
                        self.log(f"accept failed: {exc}")
                    else:
                        self.take(conn)
                if self.children or self.listener in ready:
                    last = time.monotonic()
                elif self.idle_timeout and time.monotonic() - last > self.idle_timeout:
                    self.log(f"idle for {self.idle_timeout:.0f} s; stopping")
                    break
                if os.getppid() != parent:
                    self.log("the process that started the worker is gone; stopping")
                    break
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            self.shutdown()

    def shutdown(self) -> None:
        self.listener.close()
        self.reap()
        for pid in list(self.children):  # commands still running: their clients are gone or going
            self.client_gone(pid)
        deadline = time.monotonic() + 5.0
        while self.children and time.monotonic() < deadline:
            time.sleep(0.05)
            self.reap()
        self.log(f"stopped after serving {self.served} commands")
        self.path.unlink(missing_ok=True)
        if self.path.parent.name.startswith("ftft-worker-"):  # made by start()
            shutil.rmtree(self.path.parent, ignore_errors=True)


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
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():  # forked children could not use CUDA
        raise RuntimeError("CUDA was initialised while preloading; forked children could not use it")
    log(f"preloaded {len(PRELOAD)} modules in {time.perf_counter() - t0:.1f} s")


def serve(path: str | Path, idle_timeout: float = 600.0, preload: bool = True) -> int:
    """Listen on ``path``; fork a child per command. Returns when stopped (SIGTERM/SIGHUP), after
    ``idle_timeout`` seconds without commands, or when the process that started it is gone."""
    _Worker(Path(path), idle_timeout, preload).run()
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
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=path.parent, start_new_session=True
        )
    _STARTED[str(path)] = proc
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists():
            return str(path)
        time.sleep(0.05)
    stop(path)
    return None


def stop(path: str | Path | None, wait_s: float = 10.0) -> None:
    """Stop the worker that ``start`` started on ``path`` (if any); wait for it (no zombie left)."""
    proc = _STARTED.pop(str(path), None) if path else None
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    shutil.rmtree(Path(path).parent, ignore_errors=True)  # start()'s ftft-worker-* folder


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
