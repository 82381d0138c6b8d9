"""What a task is and becomes, without I/O: the task-list format and its file, the lifecycle
decisions over an API record, a task's phase and state, its expiry, and the manifest document."""
