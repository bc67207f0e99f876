"""The thin Dagster layer: partitions, resources, assets, checks and schedules.

Two Dagster features the pipeline relies on are labelled beta/preview in dagster 1.13 and warn
once per definition at import: `BackfillPolicy.single_run()` on the assets (a range is one run)
and `partitions_def` on the asset checks (a check result per session). They are used on purpose
(README, "Dagster UI"), so their warnings are silenced here, for the definitions of this package
only, so that `dagster dev` and `factorcov` start without noise.
"""

import warnings

from dagster import BetaWarning, PreviewWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", BetaWarning)
    warnings.simplefilter("ignore", PreviewWarning)
    from factorcov_pipeline.orchestration import assets, checks  # noqa: F401
