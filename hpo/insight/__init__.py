"""Reading a study: the live optuna-dashboard, an offline report, and trials as CSV or JSON.

Everything here only reads the study (the dashboard also lets a person write notes); nothing
here is needed to run one.
"""

from __future__ import annotations

from hpo.insight.dashboard import Dashboard, start_dashboard
from hpo.insight.export import Format, trial_record, trial_records, write_trials
from hpo.insight.report import Report, best_params_yaml, write_report

__all__ = [
    "Dashboard",
    "Format",
    "Report",
    "best_params_yaml",
    "start_dashboard",
    "trial_record",
    "trial_records",
    "write_report",
    "write_trials",
]
