"""Test-wide settings: headless plots, the tiny tier, and a marker for tests that need real data."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("COURSE_TIER", "tiny")
