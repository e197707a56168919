"""Evaluation metrics: likelihood bounds for VAEs."""
