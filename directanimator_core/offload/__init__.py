"""Memory budget, block placement and swapping, low-bit weight storage: the only code that moves weights."""
