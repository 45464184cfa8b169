"""Tools on top of the public API: the benchmark harness (bench.py) and the fidelity report
(report.py). They use qengine.api only."""
