"""Programs: the solved system printed as NumPy or JAX code, and the
whole-program sharing of what its conditions compute alike."""
