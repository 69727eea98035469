"""The service's storage: one SQLAlchemy Core schema for SQLite and PostgreSQL."""
