"""What to try next: the sampler and pruner a spec names, warm starts from earlier studies, and
ranking finished trials."""
