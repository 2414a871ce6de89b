"""The admin API under ``/admin/v1``: forget requests (its own bearer token, never user keys)."""
