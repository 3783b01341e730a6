"""A trial worker: claims waiting trials from the study and runs them until the budget is spent.

Contract with the dispatcher: the worker process gets the validated spec as JSON on stdin, the
storage URL in ``HPO_STORAGE`` (never on the command line), and its GPU through
``CUDA_VISIBLE_DEVICES``. It prints one JSON event per line on stdout and logs to stderr.
Exit codes: 0 budget or deadline reached (or stopped by SIGTERM), 130 Ctrl-C, 1 fatal error,
3 a process of its group died (``resources.gpus_per_trial`` > 1, see :mod:`hpo.worker.group`).
"""

from __future__ import annotations

from hpo.errors import Interrupted
from hpo.worker.reporter import TrialReporter
from hpo.worker.serve import WorkerContext, run_worker
from hpo.worker.trial import TrialOutcome, run_trial

__all__ = [
    "Interrupted",
    "TrialOutcome",
    "TrialReporter",
    "WorkerContext",
    "run_trial",
    "run_worker",
]
