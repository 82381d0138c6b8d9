"""The daemon's parts around the engine: the task-list watcher, metrics, alerts, sd_notify, the
free-space watch and logging."""
