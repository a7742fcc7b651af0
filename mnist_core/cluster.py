"""Where a ``--strategy multi_worker`` run's workers come from, and what losing one means.

* **Which cluster** (``--cluster``): TensorFlow's own resolvers say who the workers are.
  ``TFConfigClusterResolver`` reads ``$TF_CONFIG`` (written by ``mnist_core.launch`` and by
  Kubeflow's TFJob), ``SlurmClusterResolver`` a SLURM job step's variables (``srun``). What
  either would only fail on later with a traceback (a ``ps`` or ``evaluator`` task, an index
  out of range, tasks SLURM placed where the resolver does not expect them) is refused here
  in one line.
* **Forming it**: every worker waits for all the others at start-up, at most
  ``--cluster-timeout`` seconds (TensorFlow's own default is an hour, in silence), and says
  so; Ctrl-C ends the wait.
* **Losing a worker**: the errors TensorFlow raises when a peer dies (its connection closes:
  about a second) or stops answering (its heartbeats stop: :data:`HEARTBEAT_SECONDS`) are
  recognised by :func:`peer_failure`, so that the run ends with one line naming the lost task
  (:class:`~mnist_core.errors.LostWorkerError`, exit status 5) instead of a traceback.

Nothing here imports TensorFlow at module level: the launcher uses it too.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time
from typing import Callable, Dict, List, Mapping, Optional, Tuple

from mnist_core.errors import ConfigError, LostWorkerError, one_line

# The variables TensorFlow's SlurmClusterResolver reads; srun sets them for every task.
SLURM_STEP = ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST", "SLURM_STEP_TASKS_PER_NODE")
# Task types MultiWorkerMirroredStrategy trains with.
TRAINING_TASKS = ("chief", "worker")
# TensorFlow's coordination service declares a task lost after this long without a
# heartbeat (its default, kept: shorter ones misfire on loaded machines).
HEARTBEAT_SECONDS = 10
DEFAULT_TIMEOUT_SECONDS = 600
# Under SLURM the first task on a node listens on the base port, the next on base + 1...:
# bases differ by this much between jobs, so jobs sharing a node do not collide.
PORTS_PER_JOB = 8
FIRST_PORT = 15000

Task = Tuple[str, int]


# ------------------------------------------------------------------ which cluster


def kind(cluster: str, environ: Mapping[str, str] = os.environ) -> str:
    """``tf_config`` or ``slurm``: where ``--cluster`` (``auto``: TF_CONFIG, else a SLURM step) is read from.

    Raises:
        ConfigError: the chosen source is absent.
    """
    in_slurm_step = all(environ.get(name) for name in SLURM_STEP)
    if cluster == "tf_config" or (cluster == "auto" and environ.get("TF_CONFIG")):
        if not environ.get("TF_CONFIG"):
            raise ConfigError("--cluster tf_config: $TF_CONFIG is not set; it names every worker and this one "
                              "(python -m mnist_core.launch --workers N sets it for local workers)")
        return "tf_config"
    if cluster == "slurm" or in_slurm_step:
        if not in_slurm_step:
            missing = next(name for name in SLURM_STEP if not environ.get(name))
            raise ConfigError(f"--cluster slurm: not inside a SLURM job step (${missing} is not set); start the "
                              "workers with srun python -m mnist_core.train ...")
        return "slurm"
    raise ConfigError("--strategy multi_worker needs $TF_CONFIG or a SLURM job step: start workers with "
                      "python -m mnist_core.launch --workers N -- <train args>, with srun under SLURM, or "
                      "with $TF_CONFIG set on each machine")


def check_tf_config(text: str) -> Dict:
    """The parsed ``$TF_CONFIG`` if MultiWorkerMirroredStrategy can train with it.

    Accepts what ``mnist_core.launch`` and Kubeflow's TFJob write: ``worker`` tasks, with or
    without one ``chief``, an ``environment`` key, an ``evaluator`` beside them (its task is
    refused: mnist_core evaluates on the workers).

    Raises:
        ConfigError: naming ``$TF_CONFIG`` and what is wrong with it.
    """
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"$TF_CONFIG is not valid JSON ({e})") from None
    if not isinstance(value, dict) or not isinstance(value.get("cluster"), dict) or not value["cluster"]:
        raise ConfigError('$TF_CONFIG needs a "cluster" object naming the tasks, e.g. '
                          '{"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}')
    cluster = value["cluster"]
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses or not all(
                isinstance(a, str) and re.fullmatch(r"\S+:\d+", a) for a in addresses):
            raise ConfigError(f'$TF_CONFIG: cluster "{job}" must be a list of "host:port" addresses, got {addresses!r}')
    if "ps" in cluster:
        raise ConfigError('$TF_CONFIG names "ps" tasks: parameter servers belong to ParameterServerStrategy; '
                          "mnist_core trains with MultiWorkerMirroredStrategy: use chief and worker tasks only")
    if not any(job in cluster for job in TRAINING_TASKS):
        raise ConfigError(f'$TF_CONFIG names no "worker" or "chief" tasks (it has {", ".join(sorted(cluster))})')
    if len(cluster.get("chief", [])) > 1:
        raise ConfigError(f'$TF_CONFIG names {len(cluster["chief"])} "chief" tasks; a cluster has at most one')
    task = value.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ConfigError('$TF_CONFIG needs a "task" object saying which task this is, e.g. '
                          '{"type": "worker", "index": 0}')
    task_type, index = task["type"], task["index"]
    if task_type == "evaluator":
        raise ConfigError('$TF_CONFIG: this is an "evaluator" task; mnist_core evaluates on the workers '
                          "every epoch: drop the evaluator, or evaluate a run with python -m mnist_core.evaluate")
    if task_type not in cluster:
        raise ConfigError(f'$TF_CONFIG: task type "{task_type}" is not in its cluster ({", ".join(sorted(cluster))})')
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[task_type]):
        raise ConfigError(f'$TF_CONFIG: task index {index!r} is out of range: "{task_type}" has '
                          f"{len(cluster[task_type])} task(s)")
    return value


def slurm_port_base(port: Optional[int], environ: Mapping[str, str] = os.environ) -> int:
    """The first port of this SLURM job step's tasks on each node: ``--cluster-port`` or one
    derived from the job and step ids (two jobs on one node then listen on different ports)."""
    if port is not None:
        return port
    try:
        job = int(environ.get("SLURM_JOB_ID", "0")) + int(environ.get("SLURM_STEP_ID", "0") or 0)
    except ValueError:
        job = 0
    return FIRST_PORT + PORTS_PER_JOB * (job % 5000)


def _slurm_layout(environ: Mapping[str, str]) -> Tuple[List[str], List[int]]:
    from tensorflow.python.distribute.cluster_resolver import slurm_cluster_resolver as slurm

    try:
        hosts = slurm.expand_hostlist(environ["SLURM_STEP_NODELIST"])
        counts = slurm.expand_tasks_per_node(environ["SLURM_STEP_TASKS_PER_NODE"])
    except ValueError as e:
        raise ConfigError(f"--cluster slurm: cannot read the job step's variables ({one_line(e)})") from None
    if len(hosts) != len(counts):
        raise ConfigError(f"--cluster slurm: $SLURM_STEP_NODELIST names {len(hosts)} node(s) and "
                          f"$SLURM_STEP_TASKS_PER_NODE {len(counts)}")
    return hosts, counts


def slurm_gpu_ids(visible: int, tasks_here: int, local_id: int, bound: bool) -> List[int]:
    """Indices (among the GPUs this task sees) of the GPUs it trains on.

    SLURM either binds GPUs to each task (``--gpus-per-task``: the task sees only its own)
    or lets every task on a node see all of the node's GPUs (``--gres=gpu:N``); then, as
    TensorFlow's SlurmClusterResolver allocates them, each of the node's tasks takes an
    equal share in the order of its local id.
    """
    if bound or tasks_here <= 1 or visible < tasks_here or visible % tasks_here:
        return list(range(visible))
    share = visible // tasks_here
    return list(range(local_id * share, (local_id + 1) * share))


def slurm_gpus(visible: int, environ: Mapping[str, str] = os.environ) -> List[int]:
    """:func:`slurm_gpu_ids` for this task, from its SLURM variables."""
    hosts, counts = _slurm_layout(environ)
    node = environ.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]
    tasks_here = counts[hosts.index(node)] if node in hosts else max(counts)
    bound = bool(environ.get("SLURM_GPUS_PER_TASK"))
    return slurm_gpu_ids(visible, tasks_here, int(environ.get("SLURM_LOCALID", "0") or 0), bound)


def resolver(cluster: str, port: Optional[int], gpus: int, environ: Mapping[str, str] = os.environ):
    """TensorFlow's cluster resolver for ``--cluster`` (see :func:`kind`).

    Args:
        cluster: ``auto``, ``tf_config`` or ``slurm``.
        port: ``--cluster-port`` (SLURM only).
        gpus: The GPUs this task trains on (already made the only visible ones).

    Raises:
        ConfigError: the cluster's description is missing or unusable.
    """
    import tensorflow as tf

    source = kind(cluster, environ)
    if source == "tf_config":
        if port is not None:
            raise ConfigError("--cluster-port applies to SLURM; $TF_CONFIG names every task's port")
        check_tf_config(environ["TF_CONFIG"])
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    hosts, counts = _slurm_layout(environ)
    base = slurm_port_base(port, environ)
    if base + max(counts) - 1 > 65535:
        raise ConfigError(f"--cluster-port {base}: {max(counts)} tasks on a node need ports up to "
                          f"{base + max(counts) - 1}, past 65535")

    class SlurmResolver(tf.distribute.cluster_resolver.SlurmClusterResolver):
        # The GPUs are chosen before TensorFlow initialises them (slurm_gpus); the resolver
        # only reports how many this task has. Its own GPU logic would run nvidia-smi, absent
        # on CPU nodes, and set CUDA_VISIBLE_DEVICES after TensorFlow has read it.
        def num_accelerators(self, task_type=None, task_id=None, config_proto=None):
            return {"GPU": gpus} if gpus else {}

    try:
        result = SlurmResolver(port_base=base, gpus_per_node=sum(counts), gpus_per_task=1, auto_set_gpu=False)
        spec = result.cluster_spec()
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"--cluster slurm: {one_line(e)}") from None
    host = spec.task_address(result.task_type, result.task_id).rsplit(":", 1)[0]
    node = environ.get("SLURMD_NODENAME")
    if node and node != host:
        # The resolver places tasks block by block over the sorted node list, as srun does
        # by default; under another --distribution this task would listen on another node.
        raise ConfigError(f"--cluster slurm: task {result.task_id} runs on {node}, but TensorFlow's "
                          f"SlurmClusterResolver places it on {host}; start the step with srun --distribution=block")
    return result


def task_name(task: Task) -> str:
    """``chief``, ``worker 1``: how a task is named in messages."""
    task_type, index = task
    return "chief" if task_type == "chief" else f"{task_type} {index}"


def training_tasks(spec) -> List[Task]:
    """The chief and worker tasks of a ``ClusterSpec`` (or its dict), chief first."""
    jobs = spec if isinstance(spec, dict) else spec.as_dict()
    return [(job, i) for job in TRAINING_TASKS for i in range(len(jobs.get(job, ())))]


_SOURCES = {"tf_config": "$TF_CONFIG", "slurm": "the SLURM job step"}


def describe(cluster_resolver, source: str) -> str:
    """``worker 1 of 2 (SLURM job 123, localhost:15009)``: this task, for the log."""
    spec = cluster_resolver.cluster_spec()
    me = (cluster_resolver.task_type, cluster_resolver.task_id)
    where = "TF_CONFIG" if source == "tf_config" else f"SLURM job {os.environ.get('SLURM_JOB_ID', '?')}"
    return f"{task_name(me)} of {len(training_tasks(spec))} ({where}, {spec.task_address(*me)})"


# ------------------------------------------------------------------ forming it


def _configure_coordination(cluster_resolver, timeout_seconds: float) -> None:
    """The coordination service MultiWorkerMirroredStrategy would configure, with a bounded
    wait for the workers to register (TensorFlow's default waits an hour)."""
    from tensorflow.python.eager import context

    try:  # TensorFlow-internal modules: without them the strategy configures its defaults
        from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
        from tensorflow.python.distribute import multi_worker_util
    except ImportError:
        return
    if context.context().coordination_service is not None:
        return  # configured already (a second strategy in one process)
    spec = multi_worker_util.normalize_cluster_spec(cluster_resolver.cluster_spec())
    jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=spec.num_tasks(job))
            for job in TRAINING_TASKS if job in spec.jobs]
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=multi_worker_util.coordination_leader(spec),
        cluster_register_timeout_in_ms=int(timeout_seconds * 1000), coordinated_jobs=jobs)
    config = context.context().coordination_service
    if "cluster_register_with_barrier" in {f.name for f in config.DESCRIPTOR.fields}:
        # Only a registration barrier honours the timeout; without it the wait is unbounded.
        config.cluster_register_with_barrier = True


def create_strategy(cluster_resolver, timeout_seconds: float, source: str, info: Callable[[str], None]):
    """``MultiWorkerMirroredStrategy`` over ``cluster_resolver``, once every worker has joined.

    TensorFlow waits for the workers inside one C++ call that holds Python's interpreter
    lock, so no Python signal handler can run until it returns: Ctrl-C is given its default
    action for the wait (it ends the process at once; nothing is written yet), and SIGTERM,
    which TensorFlow's C++ side takes for itself during the call, gets back the action it
    had before.

    Raises:
        LostWorkerError: a worker did not join within ``timeout_seconds``.
        ConfigError: this task cannot listen on its address.
    """
    import tensorflow as tf

    _configure_coordination(cluster_resolver, timeout_seconds)
    _quiet_peer_watcher()
    info(f"cluster: {describe(cluster_resolver, source)}; waiting for every worker to join "
         f"(at most {timeout_seconds:g} s, --cluster-timeout)")
    main = threading.current_thread() is threading.main_thread()
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)} if main else {}
    if main:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=cluster_resolver)
    except Exception as e:
        spec = cluster_resolver.cluster_spec()
        me = (cluster_resolver.task_type, cluster_resolver.task_id)
        if "Could not start gRPC server" in str(e):
            refused = ConfigError(f"{task_name(me)} cannot listen on {_address(spec, me)} (from {_SOURCES[source]}): "
                                  "the port is in use, or the host is not this machine")
            refused.exit_at_once = True  # TensorFlow's runtime is half started: its teardown only logs this again
            raise refused from None
        missing = _not_joined(e, cluster_resolver)
        if missing is None:
            raise
        names = ", ".join(f"{task_name(t)} ({_address(spec, t)})" for t in missing)
        raise LostWorkerError(f"the cluster did not form within {timeout_seconds:g} s (--cluster-timeout): "
                              f"{names} never joined", restart_flag="") from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _not_joined(error: BaseException, cluster_resolver) -> Optional[List[Task]]:
    """The tasks that did not join, if ``error`` is the cluster's registration timing out."""
    text = str(error)
    me = (cluster_resolver.task_type, cluster_resolver.task_id)
    spec = cluster_resolver.cluster_spec()
    if "Wait_for_all_tasks_to_register" in text:
        # The leader's barrier lists the missing tasks, one per line, after this heading.
        listed = text.split("timed out task names:", 1)[-1].strip().splitlines()
        missing = [t for line in listed for t in _tasks_named(line) if _TASK.fullmatch(line.strip()) and t != me]
        return missing or [t for t in training_tasks(spec) if t != me]
    if "RegisterTask" in text and type(error).__name__ == "DeadlineExceededError":
        return [training_tasks(spec)[0]]  # the coordination leader itself never answered
    return None


def _quiet_peer_watcher() -> None:
    """Keeps the traceback of TensorFlow's preemption watcher thread off stderr when a peer is
    lost: the main thread reports that loss itself, in one line."""
    if getattr(threading.excepthook, "_mnist_core", False):
        return
    previous = threading.excepthook

    def hook(args) -> None:
        name = getattr(args.thread, "name", "") or ""
        if name.startswith("PeerTerminationWatcher") and peer_failure(args.exc_value) is not None:
            return
        previous(args)

    hook._mnist_core = True
    threading.excepthook = hook


# ------------------------------------------------------------------ losing a worker

# The tf.errors a lost peer raises, and the words of their messages that say it was a peer:
# a collective aborted, the coordination service or a heartbeat, a connection to a task.
_PEER_ERRORS = ("UnavailableError", "DeadlineExceededError", "CancelledError", "AbortedError",
                "InternalError", "UnknownError", "FailedPreconditionError")
_PEER_WORDS = re.compile(r"Collective ops is aborted|CoordinationService|coordination service|unhealthy|"
                         r"heartbeat|Socket closed|Connection reset|Connection refused|failed to connect|"
                         r"cluster check alive failed", re.I)
_TASK = re.compile(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)")


def peer_failure(error: BaseException) -> Optional[str]:
    """Why a peer was lost, if ``error`` is TensorFlow saying so; else ``None``."""
    names = {cls.__name__ for cls in type(error).__mro__}
    if not names & set(_PEER_ERRORS):
        return None
    text = str(error)
    if not _PEER_WORDS.search(text):
        return None
    if re.search(r"stopped sending heartbeats|unhealthy", text, re.I):
        return f"no heartbeat from it for {HEARTBEAT_SECONDS} s (it ended or stopped answering)"
    if re.search(r"Heartbeat", text) and "Deadline" in text:
        return f"no heartbeat from it for {HEARTBEAT_SECONDS} s (it ended or stopped answering)"
    if re.search(r"Socket closed|Connection reset|Connection refused|failed to connect", text, re.I):
        return "its process ended (connection closed)"
    return one_line(text.split("\n")[0])[:160]


def _tasks_named(text: str, after: str = "") -> List[Task]:
    if after:
        position = text.find(after)
        if position < 0:
            return []
        text = text[position:]
    found: List[Task] = []
    for job, index in _TASK.findall(text):
        task = (job, int(index))
        if task not in found:
            found.append(task)
    return found


def _address(spec, task: Task) -> str:
    try:
        return spec.task_address(*task)
    except (ValueError, KeyError, IndexError):
        return "?"


# A probed peer that does not answer within this long has stopped answering.
PROBE_SECONDS = 2.0


def probe(task: Task) -> Optional[str]:
    """Why peer ``task`` is lost, or ``None`` if it answers: TensorFlow's own health check
    (a dead peer's host refuses at once, a frozen one lets :data:`PROBE_SECONDS` pass)."""
    import tensorflow as tf
    from tensorflow.python.eager import context

    try:
        context.context().check_collective_ops_peer_health(f"/job:{task[0]}/replica:0/task:{task[1]}",
                                                           timeout_in_ms=int(PROBE_SECONDS * 1000))
    except tf.errors.DeadlineExceededError:
        return f"it stopped answering (no answer within {PROBE_SECONDS:g} s)"
    except tf.errors.UnavailableError:
        return "its process ended"
    except tf.errors.FailedPreconditionError:
        return "it was restarted, as a new process"
    except tf.errors.OpError:
        return None
    return None


def lost_peers(error: BaseException, cluster_resolver,
               probe: Callable[[Task], Optional[str]] = probe) -> List[Tuple[Task, str]]:
    """The peers lost, each with why.

    Every other task is probed: an error a survivor raises may name another survivor whose
    collectives were aborted in turn. When every probe answers, the tasks the error names
    are taken (or, when its heartbeats to the coordination leader failed, the leader).
    """
    me = (cluster_resolver.task_type, cluster_resolver.task_id)
    tasks = training_tasks(cluster_resolver.cluster_spec())
    found = [(task, why) for task in tasks if task != me for why in [probe(task)] if why]
    if found:
        return found
    why = peer_failure(error) or "it failed"
    named = [t for t in _tasks_named(str(error)) if t != me and t in tasks]
    if not named and tasks[0] != me:
        named = [tasks[0]]  # its heartbeats to the coordination leader failed
    return [(task, why) for task in named]


def report_lost(error: BaseException, cluster_resolver,
                probe: Callable[[Task], Optional[str]] = probe, linger: bool = True) -> str:
    """``lost worker 1 (127.0.0.1:4242): its process ended``: what the run ends with.

    With ``linger``, a worker with fellow survivors then keeps answering before the run
    ends, so that their probes find it alive and name the right task: they may learn of the
    loss up to a heartbeat timeout later (a closed connection tells at once, the
    coordination service only after :data:`HEARTBEAT_SECONDS`).
    """
    spec = cluster_resolver.cluster_spec()
    lost = lost_peers(error, cluster_resolver, probe)
    if linger and len(training_tasks(spec)) - len(lost) > 1:
        time.sleep(HEARTBEAT_SECONDS + PROBE_SECONDS * len(lost) + 1.0)
    if not lost:
        return f"lost a peer: {peer_failure(error)}"
    return "lost " + "; ".join(f"{task_name(t)} ({_address(spec, t)}): {why}" for t, why in lost)
