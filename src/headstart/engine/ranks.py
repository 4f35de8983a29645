"""Which process of a multi-process run this is, before Lightning starts the process group.

Lightning launches the processes (its ``ddp`` launcher re-runs the command line with
``LOCAL_RANK`` set), or an external launcher does (``torchrun``: ``RANK``; SLURM:
``SLURM_PROCID``). Headstart only reads these variables: rank 0 indexes, splits, decodes
into the cache and writes the run folder; the other ranks wait for rank 0's files
(polling, with a timeout) and read them, so every rank trains on the same split and no
two processes ever write the same file. Multi-node runs need the data, the run folder
and the cache on a filesystem every node sees.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from headstart.errors import ConfigError, DataError

READY = "prepared.json"  # checkpoints/prepared.json: rank 0 has written split, config, caches


def global_rank() -> int:
    """0 for a single process and for the process that launches the others."""
    env = os.environ
    if "RANK" in env:  # torchrun (and Lightning's own children after init)
        return int(env["RANK"])
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        return int(env["SLURM_PROCID"])
    if int(env.get("NODE_RANK", "0")) > 0:
        raise ConfigError(
            "NODE_RANK > 0 without torchrun or SLURM: launch multi-node runs with torchrun or srun "
            "(see the README's 'Several GPUs and machines' section)."
        )
    return int(env.get("LOCAL_RANK", "0"))


def external_launch_id() -> str | None:
    """An id every rank of one torchrun/SLURM launch shares; None under Lightning's launcher,
    which starts ranks > 0 only once rank 0 reaches training (its files exist by then)."""
    env = os.environ
    if "TORCHELASTIC_RUN_ID" in env:
        keys: tuple[str, ...] = ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RESTART_COUNT")
    elif int(env.get("SLURM_NTASKS", "1")) > 1:
        keys = ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_RESTART_COUNT")
    else:
        return None
    return "|".join(env.get(k, "") for k in keys)


def wait_timeout() -> float:
    """Seconds ranks > 0 wait for rank 0's preparation (HEADSTART_RANK_WAIT, default 1 h:
    decoding a big data set the first time takes a while)."""
    return float(os.environ.get("HEADSTART_RANK_WAIT", "3600"))


def mark_ready(run_dir: Path) -> None:
    """Rank 0: the run folder's split, config and caches are complete for this launch."""
    folder = run_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    from headstart.files import atomic_write

    atomic_write(folder / READY, external_launch_id() or "")


def wait_for_rank0(run_dir: Path, rank: int) -> None:
    """Ranks > 0: block until rank 0 marked the run folder ready for this launch."""
    launch = external_launch_id()
    path = run_dir / "checkpoints" / READY
    timeout = wait_timeout()
    deadline = time.monotonic() + timeout
    while True:
        try:
            if launch is None or path.read_text() == launch:
                if path.exists():
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise DataError(
                f"rank {rank} waited {timeout:.0f} s for rank 0 to prepare {run_dir} and gave up; "
                "see rank 0's output for its error (HEADSTART_RANK_WAIT sets the wait)."
            )
        time.sleep(0.2)


def wait_for_file(path: Path, rank: int, what: str) -> None:
    """Ranks > 0: block until rank 0 has written ``path`` (written atomically by rename)."""
    timeout = wait_timeout()
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise DataError(f"rank {rank} waited {timeout:.0f} s for rank 0's {what} ({path}); see rank 0's output.")
        time.sleep(0.2)
