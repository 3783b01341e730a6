"""Who runs which trial: the trial budget and its claims, the epoch budget, and retries of
trials whose worker died."""
