"""Beyond one machine: where a multi_worker job's workers come from, and losing one.

Everything runs on 127.0.0.1. SLURM tasks are started with the variables ``srun`` sets for
a job step, Kubeflow's TFJob shapes are TF_CONFIGs, and a worker is lost through a callback
(tests/cluster_faults.py) with which it kills or freezes itself at an epoch's end, as a
crashed or partitioned node stops.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO, error_lines, make_idx_dir, run_cli
from mnist_core import cluster
from mnist_core.config import TrainConfig
from mnist_core.errors import ConfigError, LostWorkerError, python_words

# Part of the full suite (`python -m pytest -m "not slow"`, what CI runs), not of the quick
# `python -m pytest` a contributor runs between edits: its commands and harnesses take minutes.
pytestmark = pytest.mark.full

TESTS = str(REPO / "tests")
EPOCHS = 4
# 576 examples in global batches of 48 (2 or 3 replicas): 12 steps an epoch, 3 loop calls.
STEPS_PER_EPOCH = 12
TRAIN = ["--epochs", str(EPOCHS), "--batch-size", "48", "--steps-per-loop", "4", "--model", "mlp_small"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_idx_dir(tmp_path_factory.mktemp("cluster") / "data", n_train=576, n_test=100)


def free_ports(n, consecutive=False):
    """``n`` free ports on 127.0.0.1 (consecutive ones for SLURM, whose tasks on a node
    listen on a base port and the ports after it)."""
    for base in range(20000, 60000, 97) if consecutive else [0]:
        sockets = [socket.socket() for _ in range(n)]
        try:
            for i, s in enumerate(sockets):
                s.bind(("127.0.0.1", base + i if consecutive else 0))
            return [s.getsockname()[1] for s in sockets]
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free consecutive ports")


def slurm_env(rank, tasks, job="4242"):
    """What srun sets for task ``rank`` of a ``tasks``-task step on one node called localhost."""
    return {"SLURM_JOB_ID": job, "SLURM_STEP_ID": "0", "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank),
            "SLURM_NODEID": "0", "SLURM_STEP_NUM_TASKS": str(tasks), "SLURM_STEP_NODELIST": "localhost",
            "SLURM_STEP_TASKS_PER_NODE": str(tasks), "SLURMD_NODENAME": "localhost"}


def tf_config(cluster_spec, task_type, index, **extra):
    return json.dumps({"cluster": cluster_spec, "task": {"type": task_type, "index": index}, **extra})


def start(args, env):
    """One worker, as a cluster manager starts it: its own environment, no launcher."""
    clean = {k: v for k, v in os.environ.items() if k != "TF_CONFIG" and not k.startswith("SLURM")}
    return subprocess.Popen([sys.executable, "-m", "mnist_core.train", "--strategy", "multi_worker", *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**clean, "PYTHONPATH": TESTS, **env})


def finish(workers, timeout=300):
    results = [w.communicate(timeout=timeout) for w in workers]
    return [w.returncode for w in workers], results


def digests(stdout):
    return re.findall(r"weights sha256 (\w+)", stdout)


# ------------------------------------------------------------------ where the workers come from


@pytest.mark.parametrize("value", [
    {"cluster": {"worker": ["tfjob-worker-0.ns.svc:2222", "tfjob-worker-1.ns.svc:2222"]},
     "task": {"type": "worker", "index": 1}, "environment": "cloud"},
    {"cluster": {"chief": ["tfjob-chief-0.ns.svc:2222"], "worker": ["tfjob-worker-0.ns.svc:2222"]},
     "task": {"type": "chief", "index": 0}, "environment": "cloud"},
    {"cluster": {"chief": ["c:2222"], "worker": ["w:2222"], "evaluator": ["e:2222"]},
     "task": {"type": "worker", "index": 0}},
], ids=["workers", "chief-and-worker", "evaluator-beside"])
def test_tf_config_shapes_kubeflow_writes_are_accepted(value):
    assert cluster.check_tf_config(json.dumps(value))["task"] == value["task"]


@pytest.mark.parametrize("text, says", [
    ("{not json", "not valid JSON"),
    ('{"cluster": {"worker": ["a:1"]}}', 'needs a "task"'),
    ('{"cluster": {"worker": ["a:1"], "ps": ["p:1"]}, "task": {"type": "worker", "index": 0}}',
     "ParameterServerStrategy"),
    ('{"cluster": {"worker": ["a:1"], "evaluator": ["e:1"]}, "task": {"type": "evaluator", "index": 0}}',
     "evaluates on the workers"),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}', "out of range"),
    ('{"cluster": {"chief": ["a:1", "b:1"]}, "task": {"type": "chief", "index": 0}}', "at most one"),
    ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}', '"host:port"'),
])
def test_tf_config_it_cannot_train_with_is_refused_by_name(text, says):
    with pytest.raises(ConfigError, match=re.escape(says)) as refused:
        cluster.check_tf_config(text)
    assert str(refused.value).startswith("$TF_CONFIG")


def test_the_cluster_comes_from_tf_config_then_slurm():
    slurm = slurm_env(0, 2)
    config = {"TF_CONFIG": tf_config({"worker": ["a:1"]}, "worker", 0)}
    assert cluster.kind("auto", config) == "tf_config"
    assert cluster.kind("auto", slurm) == "slurm"
    assert cluster.kind("auto", {**slurm, **config}) == "tf_config"  # the launcher inside an allocation
    assert cluster.kind("slurm", {**slurm, **config}) == "slurm"
    with pytest.raises(ConfigError, match=r"needs \$TF_CONFIG or a SLURM job step"):
        cluster.kind("auto", {})
    # An sbatch script outside srun has job variables but no step: named.
    with pytest.raises(ConfigError, match=r"not inside a SLURM job step \(\$SLURM_STEP_NODELIST is not set\)"):
        cluster.kind("slurm", {k: v for k, v in slurm.items() if k != "SLURM_STEP_NODELIST"})
    with pytest.raises(ConfigError, match=r"--cluster tf_config: \$TF_CONFIG is not set"):
        cluster.kind("tf_config", slurm)


def test_slurm_step_resolves_through_tensorflows_resolver(monkeypatch):
    for name, value in slurm_env(1, 2, job="77").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    resolver = cluster.resolver("auto", 30000, gpus=0)
    assert resolver.cluster_spec().as_dict() == {"worker": ["localhost:30000", "localhost:30001"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)
    assert resolver.num_accelerators() == {}, "a CPU node: no nvidia-smi needed, no GPU claimed"
    # Without --cluster-port, jobs sharing a node get different ports.
    bases = {cluster.slurm_port_base(None, {"SLURM_JOB_ID": job}) for job in ("77", "78", "79")}
    assert len(bases) == 3 and all(1024 < b and b + cluster.PORTS_PER_JOB <= 65536 for b in bases)
    with pytest.raises(ConfigError, match="--cluster-port applies to SLURM"):
        monkeypatch.setenv("TF_CONFIG", tf_config({"worker": ["a:1"]}, "worker", 0))
        cluster.resolver("auto", 30000, gpus=0)


def test_slurm_placement_the_resolver_does_not_expect_is_refused(monkeypatch):
    """TensorFlow's resolver places ranks block-wise over the sorted nodes; a task that
    SLURM placed elsewhere (--distribution=cyclic) would listen on another node."""
    env = {**slurm_env(1, 2), "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_STEP_TASKS_PER_NODE": "1(x2)",
           "SLURMD_NODENAME": "n1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match=r"task 1 runs on n1, but .* places it on n2; .*--distribution=block"):
        cluster.resolver("slurm", 30000, gpus=0)


@pytest.mark.parametrize("visible, tasks_here, local_id, bound, expected", [
    (8, 4, 2, False, [4, 5]),     # --gres=gpu:8 with 4 tasks per node: an equal share by local id
    (4, 4, 3, False, [3]),
    (1, 4, 3, False, [0]),        # SLURM bound one GPU to the task (cgroups): it sees its own only
    (4, 2, 1, True, [0, 1, 2, 3]),  # --gpus-per-task: all it sees is its own
    (2, 1, 0, False, [0, 1]),
])
def test_slurm_tasks_share_a_nodes_gpus(visible, tasks_here, local_id, bound, expected):
    assert cluster.slurm_gpu_ids(visible, tasks_here, local_id, bound) == expected


def test_cluster_flags_belong_to_multi_worker_and_are_not_reproduced(tmp_path):
    from mnist_core.train import config_from_args, read_config_file

    for flags in (["--cluster", "slurm"], ["--cluster-port", "3000"], ["--cluster-timeout", "5"]):
        with pytest.raises(ConfigError, match=f"{flags[0]} applies to --strategy multi_worker only"):
            config_from_args(flags)
    with pytest.raises(ConfigError, match=python_words("--cluster-timeout must be a positive number")):
        TrainConfig(strategy="multi_worker", cluster_timeout=0)
    config = config_from_args(["--strategy", "multi_worker", "--cluster", "slurm", "--cluster-port", "3000"])
    assert (config.cluster, config.cluster_port) == ("slurm", 3000)
    # Reproducing a run elsewhere (--config summary.json) takes its settings, not its cluster.
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"config": config.to_dict()}))
    values = read_config_file(str(summary))
    assert "cluster" not in values and "cluster_port" not in values and values["strategy"] == "multi_worker"


def test_launcher_refuses_cluster_flags():
    result = run_cli("mnist_core.launch", "--workers", "2", "--", "--cluster", "slurm")
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        "mnist-launch: error: do not pass --cluster after --: the launcher's workers are its own local cluster "
        "($TF_CONFIG)"]


# ------------------------------------------------------------------ what a lost peer says


def _tf_error(kind, message):
    import tensorflow as tf

    return getattr(tf.errors, kind)(None, None, message)


# Messages as TensorFlow 2.21 raises them on this machine when a peer is lost.
KILLED = ("Graph execution error:\n\nDetected at node while/adam/CollectiveReduceV2\nCollective ops is aborted by: "
          "recvmsg:Connection reset by peer\nAdditional GRPC error information from remote target "
          "/job:worker/replica:0/task:1 while calling /tensorflow.WorkerService/RecvBuf:\n:UNKNOWN:Error received "
          "from peer  {grpc_message:\"recvmsg:Connection reset by peer\", grpc_status:14}")
SILENT = ("Graph execution error:\nCollective ops is aborted by: Error reported from /job:worker/task:1: The "
          "following tasks are unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks "
          "have crashed. Check the task logs for an earlier error")
LEADER_SILENT = ("Graph execution error:\nCollective ops is aborted by: Deadline Exceeded\n"
                 "RPC: /tensorflow.CoordinationService/Heartbeat")


def test_a_lost_peer_is_recognised_and_named(monkeypatch):
    import tensorflow as tf

    spec = {"chief": ["127.0.0.1:1000"], "worker": ["127.0.0.1:1001", "127.0.0.1:1002"]}
    monkeypatch.setenv("TF_CONFIG", tf_config(spec, "worker", 0))
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()  # reads $TF_CONFIG when asked

    def answers(task):
        return None

    def report(error, probe=answers):
        return cluster.report_lost(error, resolver, probe=probe, linger=False)

    # The survivors probe every peer: the lost one is found whichever task the error names
    # (here the chief, whose own collectives were aborted when worker 1 died).
    cascade = _tf_error("UnavailableError", KILLED.replace("/job:worker/replica:0/task:1", "/job:chief/replica:0/task:0"))
    assert report(cascade, probe=lambda task: "it stopped answering" if task == ("worker", 1) else None) == \
        "lost worker 1 (127.0.0.1:1002): it stopped answering"
    # Every probe answering (the lost task came back), the error's own words are taken.
    assert report(_tf_error("UnavailableError", KILLED)) == \
        "lost worker 1 (127.0.0.1:1002): its process ended (connection closed)"
    assert report(_tf_error("UnavailableError", SILENT)).startswith(
        "lost worker 1 (127.0.0.1:1002): no heartbeat from it for 10 s")
    # Its heartbeats to the coordination leader (the chief) failed: the leader is the lost one.
    assert report(_tf_error("DeadlineExceededError", LEADER_SILENT)).startswith("lost chief (127.0.0.1:1000): no heartbeat")
    # Not a peer: a bug or bad data keeps its own error.
    assert cluster.peer_failure(_tf_error("InvalidArgumentError", "Incompatible shapes: [64,10] vs. [32,10]")) is None
    assert cluster.peer_failure(_tf_error("UnavailableError", "file system /data is unavailable")) is None
    assert cluster.peer_failure(ValueError("Collective ops is aborted")) is None


def test_a_checkpoint_cut_short_by_a_lost_peer_is_never_the_newest(tmp_path, monkeypatch):
    import keras
    import tensorflow as tf

    from mnist_core.checkpoint import CheckpointState

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    state = CheckpointState(model, optimizer, str(tmp_path / "checkpoints"))
    first = state.save(4)
    real_write = tf.train.Checkpoint._write

    def peer_dies_half_way(self, prefix, options=None):
        real_write(self, prefix)  # the files are written, the manager's index not yet updated
        raise _tf_error("UnavailableError", KILLED)

    monkeypatch.setattr(tf.train.Checkpoint, "_write", peer_dies_half_way)
    with pytest.raises(tf.errors.UnavailableError):  # the trainer turns it into the lost-worker line
        state.save(8)
    assert not list((tmp_path / "checkpoints").glob("ckpt-8*"))
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")) == first


def test_the_lost_worker_line_ends_with_the_command_that_resumes():
    from mnist_core.train import restart_command

    error = LostWorkerError("lost worker 1 (h:1): its process ended; the last complete checkpoint is c/ckpt-8")
    assert str(error).endswith("; to resume, start every worker again with --resume")
    error.command = restart_command(["--output-dir", "runs/my run", "--overwrite"], error.restart_flag)
    assert str(error).endswith("again: python -m mnist_core.train --output-dir 'runs/my run' --resume")
    fresh = LostWorkerError("lost chief (h:1): ...; no checkpoint was complete yet", restart_flag="--overwrite")
    assert str(fresh).endswith("start every worker again with --overwrite")
    assert error.exit_code == 5


def test_launcher_line_names_the_checkpoint_its_index_names(tmp_path):
    from mnist_core.launch import lost_worker_line

    run = tmp_path / "my run"
    args = ["--output-dir", str(run), "--epochs", "3"]
    line = lost_worker_line(2, args, ["worker 1 was killed by SIGKILL"])
    assert "no checkpoint was complete yet" in line and line.endswith("--epochs 3 --overwrite")
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-64"\n'
                                                    'all_model_checkpoint_paths: "ckpt-64"\n')
    line = lost_worker_line(2, [*args, "--overwrite"], ["worker 1 was killed by SIGKILL"])
    assert line.startswith("worker 1 was killed by SIGKILL; every worker stopped; the last complete checkpoint is "
                           f"{run / 'checkpoints' / 'ckpt-64'};")
    assert line.endswith(f"python -m mnist_core.launch --workers 2 -- --output-dir '{run}' --epochs 3 --resume")


# ------------------------------------------------------------------ end to end, on localhost


def test_launcher_slurm_and_a_chief_train_the_same_weights(data_dir, tmp_path):
    """The local launcher's two workers, two SLURM tasks (srun's variables) and a Kubeflow
    chief + worker TF_CONFIG: one job, the same weights; only the chief writes its run."""
    args = ["--data-dir", str(data_dir), *TRAIN]
    launched = run_cli("mnist_core.launch", "--workers", "2", "--", *args, "--output-dir", str(tmp_path / "launch"))
    assert launched.returncode == 0, launched.stdout + launched.stderr
    expected = set(digests(launched.stdout))
    assert len(expected) == 1, launched.stdout

    base = free_ports(2, consecutive=True)[0]
    slurm = [start([*args, "--output-dir", str(tmp_path / "slurm"), "--cluster-port", str(base)], slurm_env(i, 2))
             for i in range(2)]
    codes, slurm_results = finish(slurm)
    assert codes == [0, 0], slurm_results
    assert all(set(digests(out)) == expected for out, _ in slurm_results), slurm_results

    a, b = free_ports(2)
    spec = {"chief": [f"127.0.0.1:{a}"], "worker": [f"127.0.0.1:{b}"]}
    out = tmp_path / "kubeflow run"
    tasks = [start([*args, "--output-dir", str(out)],
                   {"TF_CONFIG": tf_config(spec, task_type, 0, environment="cloud")})
             for task_type in ("chief", "worker")]
    codes, results = finish(tasks)
    assert codes == [0, 0], results
    assert all(set(digests(stdout)) == expected for stdout, _ in results), results
    summary = json.loads((out / "summary.json").read_text())
    assert summary["worker"] == "chief" and summary["num_replicas"] == 2
    assert len(json.loads((out / "history.json").read_text())) == EPOCHS
    assert len(list((out / "tensorboard" / "train").iterdir())) == 1, "one writer of the run's event files"
    assert f"output {out}" in results[1][0], "the worker names the chief's run directory, not its scratch"
    # Workers end moments apart: none logs the others' departure after a complete run.
    logged = [line for text in [launched.stderr, *(err for _, err in slurm_results + results)]
              for line in text.splitlines() if re.match(r"(\[worker \d\] )?[EWF]\d{4} ", line)]
    assert not logged, logged


def test_a_lost_worker_stops_the_launched_job_in_one_line_and_it_resumes(data_dir, tmp_path):
    out = tmp_path / "run"
    args = ["--data-dir", str(data_dir), *TRAIN, "--callback", "cluster_faults:from_env"]
    started = time.monotonic()
    result = run_cli("mnist_core.launch", "--workers", "2", "--", *args, "--output-dir", str(out),
                     env={"PYTHONPATH": TESTS, "CLUSTER_FAULT": "worker 1 SIGKILL 2"})
    assert result.returncode == 5, result.stdout + result.stderr
    assert time.monotonic() - started < 240
    survivor = [line for line in result.stdout.splitlines() if line.startswith("[worker 0] mnist-train: error:")]
    assert len(survivor) == 1 and "lost worker 1" in survivor[0], result.stdout
    assert not re.search(r"Traceback|E0000|GRPC", result.stdout + result.stderr), result.stdout + result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("mnist-launch: error: worker 1 was killed by SIGKILL;"), lines
    checkpoint = re.search(r"the last complete checkpoint is (\S+);", lines[0]).group(1)
    assert checkpoint == str(out / "checkpoints" / f"ckpt-{2 * STEPS_PER_EPOCH}"), \
        "the chief saved epoch 2 with its peer gone"
    command = lines[0].split("to go on: ")[1].split()
    assert command[:5] == ["python", "-m", "mnist_core.launch", "--workers", "2"] and command[-1] == "--resume"

    resumed = run_cli(*command[2:], env={"PYTHONPATH": TESTS})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed from" in resumed.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == EPOCHS and summary["test_accuracy"] > 0.5


@pytest.mark.parametrize("workers, victim, how", [
    (2, ("worker", 1), "SIGKILL"),
    (1, ("chief", 0), "SIGKILL"),
    (1, ("worker", 0), "SIGSTOP"),
], ids=["worker-killed", "chief-killed", "worker-frozen"])
def test_every_survivor_of_a_lost_task_exits_in_one_line(data_dir, tmp_path, workers, victim, how):
    """A chief and its workers, no launcher; one task dies or freezes at epoch 2's end."""
    out = tmp_path / "run"
    ports = free_ports(1 + workers)
    spec = {"chief": [f"127.0.0.1:{ports[0]}"], "worker": [f"127.0.0.1:{p}" for p in ports[1:]]}
    tasks = [("chief", 0), *(("worker", i) for i in range(workers))]
    args = ["--data-dir", str(data_dir), *TRAIN, "--output-dir", str(out), "--callback", "cluster_faults:from_env"]
    fault = f"{victim[0]} {victim[1]} {how} 2"
    procs = {task: start(args, {"TF_CONFIG": tf_config(spec, *task), "CLUSTER_FAULT": fault}) for task in tasks}
    lost = procs.pop(victim)
    try:
        deadline = time.monotonic() + 240
        while lost.poll() is None and not _stopped(lost.pid):
            assert time.monotonic() < deadline, "the fault never happened"
            time.sleep(0.05)
        gone = time.monotonic()
        codes, results = finish(procs.values(), timeout=cluster.HEARTBEAT_SECONDS + 60)
        seconds = time.monotonic() - gone
    finally:
        lost.kill()
        lost.communicate()
    assert codes == [5] * len(procs), results
    # The bound docs/cluster.md states: a heartbeat timeout to notice, one more (and the
    # probes) for fellow survivors to notice too.
    assert seconds < 2 * cluster.HEARTBEAT_SECONDS + 15, f"survivors took {seconds:.1f} s"
    name = cluster.task_name(victim)
    for _, stderr in results:
        lines = error_lines(stderr)
        assert len(lines) == 1, stderr
        assert lines[0].startswith(f"mnist-train: error: lost {name} (127.0.0.1:"), lines[0]
        # Epoch 2's if the chief lived to save it, else epoch 1's.
        step = re.search(r"the last complete checkpoint is \S+ckpt-(\d+) \(step (\d+), (\d) epoch", lines[0])
        assert step and step.group(1) == step.group(2), lines[0]
        assert int(step.group(1)) == int(step.group(3)) * STEPS_PER_EPOCH and step.group(3) in "12", lines[0]
        assert lines[0].endswith("--resume") and "--callback cluster_faults:from_env" in lines[0]
    # Whatever was being written when the peer went, the newest checkpoint is complete.
    from mnist_core import checkpoint

    newest = checkpoint.candidates(str(out / "checkpoints"))[0]
    assert checkpoint.verify(newest) is None
    assert not list((out / "checkpoints").glob("*_temp*"))


def _stopped(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


def test_a_worker_that_never_joins_ends_the_wait_in_one_line(data_dir, tmp_path):
    ports = free_ports(2)
    spec = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    out = tmp_path / "run"
    alone = start(["--data-dir", str(data_dir), *TRAIN, "--output-dir", str(out), "--cluster-timeout", "3"],
                  {"TF_CONFIG": tf_config(spec, "worker", 0)})
    (code,), ((_, stderr),) = finish([alone], timeout=120)
    assert code == 5
    assert error_lines(stderr) == [
        f"mnist-train: error: the cluster did not form within 3 s (--cluster-timeout): worker 1 (127.0.0.1:{ports[1]}) "
        f"never joined; start every worker again: python -m mnist_core.train --strategy multi_worker --data-dir "
        f"{data_dir} {' '.join(TRAIN)} --output-dir {out} --cluster-timeout 3"]
    assert not out.exists(), "nothing is written before the cluster forms"


def test_a_port_in_use_is_named(data_dir, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = start(["--data-dir", str(data_dir), *TRAIN, "--output-dir", str(tmp_path / "r")],
                       {"TF_CONFIG": tf_config({"worker": [f"127.0.0.1:{port}"]}, "worker", 0)})
        (code,), ((_, stderr),) = finish([worker], timeout=120)
    assert code == 2
    assert error_lines(stderr) == [f"mnist-train: error: worker 0 cannot listen on 127.0.0.1:{port} (from $TF_CONFIG): "
                                   "the port is in use, or the host is not this machine"]


@pytest.mark.parametrize("script", ["slurm_train.sbatch", "tfjob.yaml"])
def test_the_example_cluster_scripts_use_flags_that_exist(script, tmp_path):
    from mnist_core.train import config_from_args

    lines = (REPO / "scripts" / script).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "mnist_core.train" in line and not line.lstrip().startswith("#"))
    command = [lines[start].split("mnist_core.train", 1)[1]]
    for line in lines[start + 1:]:
        if not line.strip().startswith("--"):
            break
        command.append(line)
    text = " ".join(line.strip().rstrip("\\") for line in command)
    for name in ("RUN", "DATA"):
        text = text.replace(f'"${name}"', str(tmp_path / name.lower()))
    text = text.replace("$RESUME", "--resume").replace("$AGAIN", "--resume")
    config = config_from_args(text.split())
    assert config.strategy == "multi_worker" and config.resume and config.output_dir == str(tmp_path / "run")


PEER_LEFT = ("E0000 00:00:1796155885.014021   14045 base_collective_executor.cc:252] BaseCollectiveExecutor::StartAbort "
             "UNAVAILABLE: Error reported from /job:worker/task:1: The following tasks are unhealthy (stopped sending "
             "heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed. Check the task logs\n")
AS_A_WORKER_ENDS = f"""
import atexit, os, sys
from mnist_core import cli
# What TensorFlow's teardown logs when a peer ended first (from its own threads, any time).
atexit.register(lambda: os.write(2, {PEER_LEFT.encode()!r}))

def body():
    os.write(2, {PEER_LEFT.encode()!r})
    print("warning: a line of ours after it", file=sys.stderr)
    os.write(2, b"W0000 00:00:1.0 1 other.cc:1] another library's warning\\n")
    print("test_accuracy 0.9", flush=True)
    cli.finish_at_once()
    if sys.argv[1] == "fails":
        raise RuntimeError("a bug")

sys.exit(cli.run_main("mnist-train", body, None))
"""


def test_a_complete_worker_does_not_log_the_peers_that_ended_before_it():
    done = subprocess.run([sys.executable, "-c", AS_A_WORKER_ENDS, "succeeds"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "test_accuracy 0.9\n"
    assert done.stderr.splitlines() == ["warning: a line of ours after it",
                                        "W0000 00:00:1.0 1 other.cc:1] another library's warning"], done.stderr
    # A run that fails for another reason keeps TensorFlow's log: it may say why.
    failed = subprocess.run([sys.executable, "-c", AS_A_WORKER_ENDS, "fails"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert failed.returncode == 1 and "unhealthy" in failed.stderr and "RuntimeError: a bug" in failed.stderr
