"""Creating the tf.distribute strategy (and logical CPU devices) from the config.

``configure_devices`` must run before TensorFlow initialises its devices (before the first
op): splitting a CPU into logical devices is impossible afterwards. The CLI calls it first.
"""

from __future__ import annotations

import os
from typing import Callable, List, Optional

from mnist_core import cluster as cluster_lib
from mnist_core.config import TrainConfig
from mnist_core.errors import ConfigError


def configure_devices(config: TrainConfig) -> None:
    """Splits the CPU into ``cpu_replicas`` logical devices and restricts visible GPUs.

    Raises:
        ConfigError: if TensorFlow was already initialised with another device layout.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    _grow_gpu_memory(gpus)
    if config.devices is not None and not gpus:
        raise ConfigError(f"--devices {config.devices}: TensorFlow sees no GPU on this machine; drop --devices to "
                          "train on the CPU (--cpu-replicas N splits it for --strategy mirrored)")
    wanted = None
    if config.devices is not None and gpus:
        wanted = [int(i) for i in config.devices.split(",")]
        missing = [i for i in wanted if i >= len(gpus)]
        if missing:
            raise ConfigError(f"--devices {config.devices}: this machine has {len(gpus)} GPU(s)")
    elif gpus and config.strategy == "multi_worker" and cluster_lib.kind(config.cluster) == "slurm":
        # Every task of a node may see all of its GPUs: each takes its share (--devices wins).
        wanted = cluster_lib.slurm_gpus(len(gpus))
    if wanted is not None:
        try:
            tf.config.set_visible_devices([gpus[i] for i in wanted], "GPU")
        except RuntimeError:
            pass  # already initialised with the same choice (tests run several configs)
    if config.cpu_replicas > 1 and not gpus:  # with GPUs, mirrored replicates over them
        cpu = tf.config.list_physical_devices("CPU")[0]
        current = tf.config.get_logical_device_configuration(cpu)
        if current is not None and len(current) == config.cpu_replicas:
            return
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(config.cpu_replicas)]
            )
        except RuntimeError:
            have = len(tf.config.list_logical_devices("CPU"))
            if have < config.cpu_replicas:
                raise ConfigError(
                    f"--cpu-replicas {config.cpu_replicas}: TensorFlow is already initialised "
                    f"with {have} CPU device(s); set it before anything else runs"
                ) from None


def _grow_gpu_memory(gpus) -> None:
    """Lets each GPU's memory grow as needed instead of TensorFlow's default of taking all of
    it at start-up, unless the user chose (``TF_FORCE_GPU_ALLOW_GROWTH``).

    Why: MNIST-sized models use a few hundred MB, and with the default a second run, an
    evaluation or a test process on the same GPU fails to create its cuBLAS handle, which TF
    reports as "No BLAS for stream" when the model is first called (seen on an H200).
    """
    import tensorflow as tf

    if os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH"):
        return
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):
            pass  # already initialised (a notebook that ran TF first): keep its setting


def _replica_devices(config: TrainConfig) -> Optional[List[str]]:
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return [d.name for d in gpus]
    cpus = tf.config.list_logical_devices("CPU")
    if config.cpu_replicas > 1:
        return [d.name for d in cpus[: config.cpu_replicas]]
    return [cpus[0].name]


def make_strategy(config: TrainConfig, info: Callable[[str], None] = lambda message: None):
    """Returns the ``tf.distribute.Strategy`` that ``config.strategy`` names.

    * ``default``: TensorFlow's default (no-op) strategy.
    * ``one_device``: ``OneDeviceStrategy`` on the first GPU, else the CPU.
    * ``mirrored``: ``MirroredStrategy`` over all visible GPUs, or over ``cpu_replicas``
      logical CPU devices when there is no GPU.
    * ``multi_worker``: ``MultiWorkerMirroredStrategy`` over the cluster ``config.cluster``
      names (``$TF_CONFIG`` or a SLURM job step; see :mod:`mnist_core.cluster`), once every
      worker has joined (``info`` says it waits).
    """
    import tensorflow as tf

    if config.strategy == "default":
        return tf.distribute.get_strategy()
    if config.strategy == "one_device":
        return tf.distribute.OneDeviceStrategy(_replica_devices(config)[0])
    if config.strategy == "mirrored":
        devices = _replica_devices(config)
        if any("CPU" in d for d in devices):
            # NCCL needs GPUs; on CPU the reference all-reduce is the one that works.
            return tf.distribute.MirroredStrategy(
                devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
            )
        return tf.distribute.MirroredStrategy(devices)
    # The visible devices, not the logical ones: listing those would initialise TensorFlow's
    # runtime, which must first learn of the cluster.
    gpus = len(tf.config.get_visible_devices("GPU"))
    resolver = cluster_lib.resolver(config.cluster, config.cluster_port, gpus)
    return cluster_lib.create_strategy(resolver, config.cluster_timeout, cluster_lib.kind(config.cluster), info)


def is_chief(strategy) -> bool:
    """True for the worker that writes outputs (always true off ``multi_worker``)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )
