"""Failures that mean different things to a notebook's lifecycle."""


class SchedulerUnavailable(Exception):
    """The scheduler did not answer (timeout, controller down): nothing known, nothing lost."""


class SubmissionRefused(Exception):
    """The scheduler answered and refused the job; the message is its own error text."""
