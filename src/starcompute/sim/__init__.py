"""The planner's simulator: scenario files, demand, the simulator (mission control's
planning of every request over per-step routing tables), metrics, reports and sweeps."""
