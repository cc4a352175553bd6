"""The job system: durable background work on `worker_jobs`, in the data's own database."""
