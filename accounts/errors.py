"""Errors every app's services raise (config/errors.py says how the API answers them)."""


class Conflict(Exception):
    """Cannot be done in the current state (a cap reached, a name taken by a live object): 409."""


class NotVisible(Exception):
    """Does not exist for this actor: 404, never a 403 that confirms it exists."""
