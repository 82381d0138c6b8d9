"""The one engine behind `run` and `backfill`: the loop (due -> poll -> decide -> archive), one
task's step, the pending tasks and their due queue, and its assembly from config."""
