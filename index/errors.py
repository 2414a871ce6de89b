"""The project's one exception root. Everything obliviate raises on purpose is an
``ObliviateError``; the gateway answers each kind with its HTTP status in one place
(``gateway.errors.as_api_error``).

    try:
        index.add(fields, key)
    except ObliviateError as exc:
        ...
"""


class ObliviateError(Exception):
    """An error of obliviate's own (bugs stay plain exceptions)."""
