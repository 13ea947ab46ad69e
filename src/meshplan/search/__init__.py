"""Layer 3: enumerate legal layouts and operating points, prune with reasons, rank."""
