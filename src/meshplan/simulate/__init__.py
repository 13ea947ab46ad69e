"""Serving simulated request by request: an engine's scheduler over time, driven by the step model.

The step model (cost.iteration) owns the time of an iteration; this package owns only what the
closed formulas of cost.closed_loop average away: which requests share an iteration, when each
arrives, waits, is admitted, preempted and finished. ``step_table`` evaluates the step model once
over a grid of batch shapes; ``requests`` draws the request stream; ``engine`` runs one instance's
scheduler; ``loop`` moves time; ``summary`` and ``chrome_trace`` report.
"""
