"""Same2X trainer: data, losses, the loop and distributed launch."""
