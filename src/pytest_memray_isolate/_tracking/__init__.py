"""Tracking a test's call under memray: the Tracker, the settled heap, the open-ended window, repetitions."""
