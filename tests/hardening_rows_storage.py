"""Rows 7-12 of the hardening table (:mod:`test_hardening_defects`): full disks, read-only folders, damaged indexes, odd audio folders."""

ROWS = []
