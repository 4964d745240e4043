"""Preparing real data for the text benchmarks (`joulebench data prepare`)."""
