"""The check worker: deployed once per region, fed by that region's check-job queue."""
