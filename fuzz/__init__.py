"""qengine's fuzzers: mutated models (ONNX float, QDQ, .keras) and hostile run-time inputs, each
case run in a worker process so that a crash or a hang is counted instead of ending the run.
`python -m fuzz --help`; docs/hardening.md records the figures of a full run."""
