"""``python -m mnist_core.launch --workers N -- <train args>``: N local workers, one job.

Starts N ``mnist_core.train --strategy multi_worker`` processes on 127.0.0.1, each with a
``TF_CONFIG`` naming all of them (free ports picked here), prefixes every output line with
the worker's name, and fails as a whole: if one worker exits non-zero the others are
stopped and the launcher exits with that worker's status; a worker lost (killed, or no
longer answering) stops the job with one line saying which, the last complete checkpoint
and the command that resumes (exit status 5).

On several real machines, skip the launcher and start one worker per machine with the
same cluster and its own index, e.g. on the second of two hosts::

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 1}}' \\
        python -m mnist_core.train --strategy multi_worker --output-dir /shared/run ...
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import List, Optional

from mnist_core import cli, cluster
from mnist_core.errors import LostWorkerError

PROG = "mnist-launch"
# After one worker fails the others get SIGTERM; their checkpoint-on-SIGTERM needs the dead
# worker's collectives and may never finish, so they are killed after this grace period.
GRACE_SECONDS = 15.0
# After a worker is lost the others stop by themselves once TensorFlow notices (a closed
# connection at once, a silent peer after its heartbeat timeout); one still running this
# long after is the one that stopped answering, and is killed.
LOST_GRACE_SECONDS = cluster.HEARTBEAT_SECONDS + 20.0


def free_ports(n: int) -> List[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (held open together, so never equal)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports: List[int], index: int) -> str:
    """The ``TF_CONFIG`` of worker ``index`` in a localhost cluster (worker 0 is chief)."""
    return json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
        "task": {"type": "worker", "index": index},
    })


def _own_session() -> dict:
    """Popen arguments that keep a terminal's Ctrl-C from reaching a worker directly:
    a new session on POSIX, a new process group on Windows."""
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def _pump(stream, prefix: str, out) -> None:
    for line in iter(stream.readline, ""):
        out.write(f"{prefix} {line}")
        out.flush()
    stream.close()


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def launch(workers: int, train_args: List[str], python: str = sys.executable) -> int:
    """Runs ``workers`` training processes and returns the job's exit status.

    A worker that fails stops the job: the others get SIGTERM (and SIGKILL after
    :data:`GRACE_SECONDS`), and the launcher exits with the failed worker's status. A worker
    that is lost (killed by a signal, or one whose peers exit with status 5) is different:
    the others stop by themselves within TensorFlow's heartbeat timeout, any left after
    :data:`LOST_GRACE_SECONDS` are killed, and the launcher says in one line which worker
    was lost, the last complete checkpoint and the command that resumes (exit status 5).
    """
    ports = free_ports(workers)
    procs = []
    threads = []
    for index in range(workers):
        env = dict(os.environ, TF_CONFIG=tf_config(ports, index), PYTHONUNBUFFERED="1")
        cmd = [python, "-m", "mnist_core.train", "--strategy", "multi_worker", *train_args]
        # Own session: a Ctrl-C in the terminal reaches the launcher only, which passes it
        # on exactly once (a second SIGINT would make a worker abort its checkpoint).
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                **_own_session())
        procs.append(proc)
        thread = threading.Thread(target=_pump, args=(proc.stdout, f"[worker {index}]", sys.stdout), daemon=True)
        thread.start()
        threads.append(thread)
    status = 0
    kill_at = None
    forwarded = []
    lost: List[str] = []  # how each lost worker was lost
    killed: List[int] = []

    def forward(signum, frame):
        # A preempted launcher passes SIGTERM on: the workers' PreemptionCheckpointHandler
        # checkpoints all of them at the same step, then they exit 143.
        forwarded.append(signum)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, forward) if threading.current_thread() is threading.main_thread() else None
    try:
        remaining = list(range(workers))
        while remaining:
            if kill_at is not None and time.monotonic() > kill_at:
                for other in remaining:
                    if status == LostWorkerError.exit_code and procs[other].poll() is None:
                        lost.append(f"worker {other} stopped answering (killed after {LOST_GRACE_SECONDS:g} s)")
                    killed.append(other)
                    procs[other].kill()
                kill_at = None
            exited = [(index, procs[index].poll()) for index in remaining]
            # A worker that fails on its own (bad input: status 2, 3, 4) takes the others
            # down with it, and their "lost peer" is its consequence: it is looked at first,
            # and the job's status stays its own.
            exited = sorted(((i, c) for i, c in exited if c is not None),
                            key=lambda item: item[1] < 0 or item[1] == LostWorkerError.exit_code)
            for index, code in exited:
                remaining.remove(index)
                if index in killed or code == 0 or forwarded:
                    status = status or code
                    continue
                if code < 0 or code == LostWorkerError.exit_code:
                    if status not in (0, LostWorkerError.exit_code):
                        continue  # stopped after another worker's own failure
                    if code < 0:
                        lost.append(f"worker {index} was killed by {_signal_name(code)}")
                    if status != LostWorkerError.exit_code:
                        status = LostWorkerError.exit_code
                        kill_at = time.monotonic() + LOST_GRACE_SECONDS  # the others stop by themselves
                elif status == 0:
                    status = code
                    print(f"{PROG}: worker {index} exited with status {code}; stopping the others",
                          file=sys.stderr, flush=True)
                    for other in remaining:
                        procs[other].send_signal(signal.SIGTERM)
                    kill_at = time.monotonic() + GRACE_SECONDS
            if remaining:
                try:
                    procs[remaining[0]].wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    pass
    except KeyboardInterrupt:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        try:
            for proc in procs:
                proc.wait()
        except KeyboardInterrupt:  # a second Ctrl-C: stop now
            for proc in procs:
                proc.kill()
        status = 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    for thread in threads:
        thread.join(timeout=5)
    if status == LostWorkerError.exit_code:
        print(f"{PROG}: error: {lost_worker_line(workers, train_args, lost)}", file=sys.stderr, flush=True)
    return status


def lost_worker_line(workers: int, train_args: List[str], lost: List[str]) -> str:
    """What the launcher says when the job lost a worker: who, the last complete checkpoint
    (read from the run directory's checkpoint index) and the command that resumes."""
    import shlex

    from mnist_core.train import config_from_args

    try:
        output_dir = config_from_args(train_args).output_dir
    except (Exception, SystemExit):  # flags the workers refused would not get this far
        output_dir = None
    who = "; ".join(lost) or "a worker was lost"
    latest = _latest_checkpoint(output_dir) if output_dir else None
    args = [a for a in train_args if a not in ("--resume", "--overwrite")]
    if latest or output_dir is None:
        where = f"the last complete checkpoint is {latest}" if latest else "the checkpoints are in the run directory"
        again = [*args, "--resume"]
    else:
        where = "no checkpoint was complete yet"
        again = [*args, "--overwrite"]
    command = ["python", "-m", "mnist_core.launch", "--workers", str(workers), "--", *again]
    shown = subprocess.list2cmdline(command) if os.name == "nt" else shlex.join(command)
    return f"{who}; every worker stopped; {where}; to go on: {shown}"


def _latest_checkpoint(output_dir: str) -> Optional[str]:
    """The checkpoint the run's ``checkpoints/checkpoint`` index names (only ever a complete
    one), read without TensorFlow."""
    import re

    directory = os.path.join(os.path.abspath(output_dir), "checkpoints")
    try:
        with open(os.path.join(directory, "checkpoint"), encoding="utf-8") as f:
            match = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', f.read(), re.M)
    except OSError:
        return None
    if not match:
        return None
    path = match.group(1)
    return path if os.path.isabs(path) else os.path.join(directory, path)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m mnist_core.launch``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        split = argv.index("--")
        own, train_args = argv[:split], argv[split + 1:]
    else:
        own, train_args = argv, []
    parser = cli.ArgumentParser(prog=PROG, description="Run mnist_core.train on N local workers "
                                "(MultiWorkerMirroredStrategy). Usage: --workers N -- <train args>")
    parser.add_argument("--workers", type=cli.positive_int, required=True, help="number of worker processes")
    args = parser.parse_args(own)
    if "--strategy" in train_args:
        parser.error("do not pass --strategy after --: the launcher sets --strategy multi_worker")
    for flag in ("--cluster", "--cluster-port"):
        if flag in train_args or any(a.startswith(flag + "=") for a in train_args):
            parser.error(f"do not pass {flag} after --: the launcher's workers are its own local cluster ($TF_CONFIG)")
    return launch(args.workers, train_args)


if __name__ == "__main__":
    sys.exit(main())
