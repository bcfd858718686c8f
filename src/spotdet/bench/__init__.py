"""Benchmarks on the user's own machine: speed, memory, cost and mAP per model/size/batch; recommendations."""
