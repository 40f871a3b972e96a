"""Runnable, tested examples of the caching patterns of ElastiCache (see README.md)."""
