"""A tiny local Ray cluster for tests and the bench: a head on 127.0.0.2 and workers on
127.0.0.3, ... (Ray rewrites 127.0.0.1 to the network card's address), one CPU each.

Each node is a `ray start --block` in its own process group that this helper started; it is
stopped by that group's id, never by `ray stop` or by name (other people's Ray on a shared
machine must survive)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")
STARTED = "Ray runtime started"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        return s.getsockname()[1]


class LocalCluster:
    def __init__(self, nodes: int = 2, cpus: int = 1, env: dict[str, str] | None = None):
        self.nodes, self.cpus = nodes, cpus
        # a local `ray.init()` once run here leaves ~/.ray/auth_token, which turns token auth on
        # for a head but not for the nodes joining it: loopback test clusters go without
        self.driver_env = {"RAY_AUTH_MODE": "disabled"}
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", **self.driver_env, **(env or {})}
        # short: Ray's unix socket paths must fit in 107 bytes
        self.temp = tempfile.mkdtemp(prefix="rayt", dir="/tmp")
        self.port = free_port()
        self.address = f"127.0.0.2:{self.port}"
        self.procs: list[subprocess.Popen] = []

    def _node(self, ip: str, *args: str) -> subprocess.Popen:
        cmd = [str(RAY), "start", "--block", f"--node-ip-address={ip}", f"--num-cpus={self.cpus}"]
        cmd += ["--num-gpus=0", "--object-store-memory=80000000", "--disable-usage-stats"]
        proc = subprocess.Popen(
            [*cmd, *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: stopped by our pid, not by name
        )
        self.procs.append(proc)
        return proc

    def _wait_started(self, proc: subprocess.Popen, timeout: float = 180) -> None:
        deadline, seen = time.monotonic() + timeout, []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            seen.append(line)
            if STARTED in line:  # drain the rest, so a full pipe never blocks the node
                threading.Thread(target=proc.stdout.read, daemon=True).start()
                return
        code = proc.poll()
        raise RuntimeError(f"ray node did not start (exit {code}):\n" + "".join(seen[-30:]))

    def start(self) -> LocalCluster:
        try:
            head = self._node(
                "127.0.0.2",
                "--head",
                f"--port={self.port}",
                "--include-dashboard=false",
                f"--temp-dir={self.temp}",
            )
            self._wait_started(head)
            for i in range(1, self.nodes):
                self._wait_started(self._node(f"127.0.0.{2 + i}", f"--address={self.address}"))
        except BaseException:
            self.stop()
            raise
        return self

    def kill_node(self, index: int) -> None:
        """SIGKILL every process of node ``index`` (its process group): a lost machine."""
        self._signal(self.procs[index], signal.SIGKILL)

    def stop(self) -> None:
        for proc in reversed(self.procs):  # workers first, then the head
            self._signal(proc, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                proc.wait(timeout=10)
        time.sleep(0.5)
        for proc in self.procs:  # raylets' children left in the group
            self._signal(proc, signal.SIGKILL)
        shutil.rmtree(self.temp, ignore_errors=True)

    @staticmethod
    def _signal(proc: subprocess.Popen, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
