"""Framework structure recognized once: torch data pipelines, worker RNG, data splits."""
