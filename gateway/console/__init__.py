"""The admin console: web pages at ``/admin/`` over the admin API."""
