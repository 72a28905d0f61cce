"""The fault matrix (table below)."""
