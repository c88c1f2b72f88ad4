"""Flow-matching schedules, solvers, guidance and long-video windows."""
