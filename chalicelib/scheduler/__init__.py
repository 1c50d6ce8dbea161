"""The scheduler: which monitors are due each minute, and the jobs sent to each region's queue."""
