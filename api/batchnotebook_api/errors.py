"""Errors both sides raise."""


class InvalidOptions(ValueError):
    """A user's options break the profile's rules; the message says which and why."""
