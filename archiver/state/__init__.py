"""What the archiver knows between runs: the store (SQLite), its schema and migrations, the tasks
given by lists and the intake, and read-only access for status and verify."""
