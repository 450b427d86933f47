"""Keeping every chunk fully protected.

``sweep`` (the repair sweep: rebuild missing or corrupt pieces, move misplaced ones, drop
extras, refresh volume root records; the health scan), ``healer`` (when to sweep: map changes,
nodes down for long, the scrub schedule).
"""
