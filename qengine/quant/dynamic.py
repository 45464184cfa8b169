"""Dynamic quantization (placeholder until implemented)."""
