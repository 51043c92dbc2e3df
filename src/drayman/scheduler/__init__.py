"""The scheduler: `planner` decides (pure), `loop` reads the store, applies, and waits."""
