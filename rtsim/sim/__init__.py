"""SimPy models that drive the sans-I/O core with simulated time."""
