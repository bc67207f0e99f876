"""The daily schedule: the day's session after the US close (18:30 New York)."""

from __future__ import annotations

from dagster import AssetSelection, build_schedule_from_partitioned_job, define_asset_job

from factorcov_pipeline.orchestration.partitions import trading_sessions

daily_job = define_asset_job(
    "factorcov_daily",
    selection=AssetSelection.all(),
    partitions_def=trading_sessions,
    description="Every asset and check of the factor covariance pipeline for one session.",
)

# The partitions' cron carries the time of day (18:30 New York, weekdays, holidays excluded);
# with end_offset=1 the tick at 18:30 on a session targets that same session.
daily_schedule = build_schedule_from_partitioned_job(daily_job, name="factorcov_after_close")
