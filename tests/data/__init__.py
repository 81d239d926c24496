"""Tests for detkit.data."""
