"""Reusable test harness: real services (mail stack, PostgreSQL, ...) the tests start and stop."""
