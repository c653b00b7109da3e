"""When assets refresh on their own and how fresh the UI expects them."""

from datetime import timedelta

import dagster as dg

# Refresh when an upstream asset has new data, once it and everything upstream is in place. Unlike `eager()`,
# a never-materialized asset is not requested just for being missing: before the first import there is nothing
# to build consensus from, and such a run could only fail.
refresh_on_new_annotations = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("refresh on new annotations")

# The weekly refresh rewrites these; a week and a day without it fails their freshness in the UI.
weekly_freshness = dg.FreshnessPolicy.time_window(fail_window=timedelta(days=8), warn_window=timedelta(days=7))
