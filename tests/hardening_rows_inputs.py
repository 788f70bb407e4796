"""Rows 1-6 of the hardening table (:mod:`test_hardening_defects`): inputs that must be refused in one line."""

ROWS = []
