"""Judging a tracked test: its capture read into figures, and its limits applied to them."""
