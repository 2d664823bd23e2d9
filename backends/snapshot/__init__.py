"""The joined ClusterSnapshot: the collector, the join and its summaries."""
