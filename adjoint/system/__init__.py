"""The system of conditions: the graph, grad L = 0 and its conditions (explicit,
implicit blocks, recurrences), the sweeps that solve it, second order, control."""
