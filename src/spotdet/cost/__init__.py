"""Cost tools: the price table, the cost formula, time windows, utilization logs, advice and schedules."""
