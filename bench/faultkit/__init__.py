"""Fault-injection scenarios behind ``bench/faults.py`` (issue 13), one module each.

Every scenario is a function ``run(ctx: Context) -> list[Row]``: it tries things that
break real runs (kills, a full disk, a memory limit, processes racing, hostile clients),
and returns one Row per thing tried, saying what happened and whether that was fine.
``ctx.quick`` asks for the reduced version the test suite runs (seconds, tiny data);
without it a scenario runs at benchmark scale (minutes, the given data).

    kill     SIGKILL train / export / predict --out anywhere, then resume or rerun
    disk     a full file system (tmpfs) under the run folder, then under the cache
    memory   a memory limit (cgroup, or RLIMIT_AS) well below the run's peak
    crowd    four trains sharing a cache; two predict --out; train vs cache clear
    server   hostile clients mixed with normal traffic on loopback
    hostile  special files, EPS as .jpg, markup and formula names, a foreign cache, serve off loopback
"""
