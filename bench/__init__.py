"""drayman's benchmark: workloads, the harness that runs them, and its CLI."""
