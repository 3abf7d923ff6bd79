"""The workspace folder and its manifest: schema, loading and migration, runs, subjects, stages, lock, paths, status."""
