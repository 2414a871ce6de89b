"""Benchmarks and evaluation: they drive the service over HTTP like any client."""
