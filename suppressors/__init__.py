"""Suppression layers and the vLLM-side plugin they act through."""
