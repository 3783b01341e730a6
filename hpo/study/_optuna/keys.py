"""Attribute keys whose meaning Optuna defines: hpo reads and writes them so that Optuna's own
callbacks, samplers and the dashboard see the same thing."""

from __future__ import annotations

#: Trial system attr set by Optuna's retry callbacks: the number of the trial this one retries.
FAILED_TRIAL = "failed_trial"
#: Trial system attr set by the same callback: every earlier attempt's number.
RETRY_HISTORY = "retry_history"
#: Trial system attr of a WAITING trial: the params ``enqueue_trial`` fixed.
FIXED_PARAMS = "fixed_params"
#: Prefix of the trial system attrs linking uploaded artifacts (``optuna.artifacts``).
ARTIFACT_PREFIX = "artifacts:"
