"""Tuning: `detkit tune`, an Optuna study over any config keys with two objectives (val/map and inference cost)."""
