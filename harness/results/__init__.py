"""Result files: the schema (defined once), the atomic writer and the MLPerf-format log."""
