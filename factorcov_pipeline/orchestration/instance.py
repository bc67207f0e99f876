"""The Dagster instance `factorcov materialize` records its runs in.

Without DAGSTER_HOME: an ephemeral in-memory instance (nothing recorded, fastest). With it: the
instance configured by `$DAGSTER_HOME/dagster.yaml`, so `dagster dev` shows the CLI's runs. The
repository ships that file (`dagster.yaml`, README "Dagster UI"); a DAGSTER_HOME that does not
exist, is not writable, or has no dagster.yaml is refused with one line saying what to do,
instead of Dagster's traceback or its multi-line notice (and its slower defaults) on every run.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import DagsterInstance

ENV_HOME = "DAGSTER_HOME"


class InstanceConfigError(ValueError):
    """DAGSTER_HOME is set but unusable; the message names the variable and the fix."""


def instance_from_env() -> DagsterInstance:
    home = os.environ.get(ENV_HOME)
    if not home:
        return DagsterInstance.ephemeral()
    path = Path(home)
    fix = "create it and copy the repository's dagster.yaml into it, or unset DAGSTER_HOME"
    if not path.is_absolute():
        raise InstanceConfigError(f"{ENV_HOME}={home} must be an absolute path ({fix})")
    if not path.is_dir():
        raise InstanceConfigError(f"{ENV_HOME}={home} is not a directory: {fix}")
    if not os.access(path, os.W_OK | os.X_OK):
        raise InstanceConfigError(f"{ENV_HOME}={home} is not writable by this user: {fix}")
    if not (path / "dagster.yaml").is_file():
        raise InstanceConfigError(
            f"{ENV_HOME}={home} has no dagster.yaml: copy the repository's dagster.yaml there "
            "(README, 'Dagster UI'), or unset DAGSTER_HOME"
        )
    return DagsterInstance.get()
