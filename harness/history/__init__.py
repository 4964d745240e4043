"""Energy history for CI (`joulebench history`): every commit's runs in one database, change
points found per series, runner changes told apart from code changes.

- rows.py: a result.json as one row (its series, its runner, its metrics);
- store.py: the database (SQLite by default, any SQLAlchemy URL such as PostgreSQL), versioned
  schema and migrations, one transaction per add;
- changes.py: change points per series (ruptures), their effect, interval and significance,
  runner changes, and the newest segment's verdict;
- plot.py: one PNG per benchmark and metric, and a Markdown summary;
- cli.py: add, check, plot, export.

Like the validator, it reads result files only and loads no framework.
"""
