"""Chunked resampling: plan, per-piece transform chain, compiled kernel, blocks, output writer."""
