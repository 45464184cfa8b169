"""Tools on top of the public API: the benchmark harness (bench.py) and the fidelity report
(report.py), and the data files they and the command line read (data_files.py). They use
qengine.api only; the command line (qengine.cli) uses them, never the reverse."""
