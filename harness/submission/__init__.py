"""Submissions: packaging run directories, the ruleset, validation, scoring and comparison.

Everything here reads files; nothing imports the runner or a training framework.
"""
