"""Names hpo shares with other processes and tools: the environment variables it reads and the
attr keys it stores in a study (Optuna's own keys are in ``hpo.study._optuna.keys``)."""

from __future__ import annotations

# -- environment ----------------------------------------------------------------------------

#: The storage URL when a spec names none (``hpo run``, the workers it starts, the API).
ENV_STORAGE = "HPO_STORAGE"
#: Where trials upload their artifacts (``best_model.pt``), handed to the workers.
ENV_ARTIFACTS = "HPO_ARTIFACTS"
#: Overrides this node's name (default: the host name), e.g. one per Slurm task on a host.
ENV_NODE = "HPO_NODE_NAME"
#: Directories (separated by os.pathsep) searched for the user's modules (``objective:``,
#: ``train.model`` / ``train.dataset: module:function``), after the spec file's directory and
#: before the working directory; ``hpo run`` hands its workers those they were found in.
ENV_OBJECTIVE_PATH = "HPO_OBJECTIVE_PATH"
#: The GPUs a worker process may use (one per worker), and its CPU threads.
ENV_VISIBLE_GPUS = "CUDA_VISIBLE_DEVICES"
ENV_THREADS = "OMP_NUM_THREADS"
#: cuBLAS's workspace setting, which deterministic CUDA runs need (read when CUDA starts).
ENV_CUBLAS_WORKSPACE = "CUBLAS_WORKSPACE_CONFIG"
#: ``1``: load digits through ``sklearn.datasets.load_digits`` (not the bundled file directly).
ENV_DIGITS_PUBLIC = "HPO_DIGITS_PUBLIC"
#: ``0`` turns hpo's speed-ups on Optuna's internals off: plain Optuna paths only.
ENV_FAST_PATHS = "HPO_FAST_PATHS"

# -- study system attrs ---------------------------------------------------------------------

#: Written once at creation; a joining spec must agree with them.
ATTR_METRIC = "hpo:metric"
ATTR_SPACE = "hpo:space"
ATTR_DESCRIPTION = "hpo:description"
#: The spec's ``objective:`` (``module:function``), "" for the built-in trainer; written at
#: creation (a study from before it was recorded has none).
ATTR_OBJECTIVE = "hpo:objective"
#: How many worker processes have registered (the next one's number).
ATTR_WORKERS = "hpo:workers"
#: The node records, oldest first.
ATTR_NODES = "hpo:nodes"
#: The trial budget (``budget.n_trials``).
ATTR_BUDGET = "hpo:n_trials"
#: The epoch budget, and the epochs trained so far.
ATTR_EPOCH_BUDGET = "hpo:max_epochs_total"
ATTR_EPOCHS = "hpo:epochs"
#: On a warm start's history trial (an earlier study's result, copied for the sampler; it takes
#: no budget slot): where it came from. The study system attr of the same name records what the
#: warm start added.
ATTR_WARM = "hpo:warm_start"

# -- trial attrs ----------------------------------------------------------------------------

#: Trial system attr: failures the trial itself caused, over the original and its retries.
ATTR_FAILURES = "hpo:failures"
#: Trial user attr of a warm start's first trial: the earlier trial whose configuration it runs.
ATTR_CONFIG = "warm_start_config"
#: Trial user attr: why the trial failed or was stopped, in one line.
ATTR_FAIL_REASON = "fail_reason"
