"""All of PostgreSQL: the models, migrations and every statement, grouped by table."""
