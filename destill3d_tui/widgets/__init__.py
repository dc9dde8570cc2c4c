"""Reusable widgets (point-cloud view, stage board, rate panel, bars, folder completion)."""
