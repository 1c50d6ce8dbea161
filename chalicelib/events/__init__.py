"""Event handlers (schedule ticks, DynamoDB streams): thin, partial-batch aware, calling services."""
