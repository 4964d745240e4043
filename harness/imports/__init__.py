"""Other tools' records as joulebench run directories, written by the same writers as a run's.

An import claims no more than its files show: a meter it cannot see is `undeclared`, and a
figure computed by another tool's rule names that rule and its version (configs/ruleset).
The first source is MLPerf Training power results (`joulebench import mlperf`, mlperf.py).
"""
