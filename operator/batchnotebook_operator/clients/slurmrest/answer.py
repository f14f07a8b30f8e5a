"""One slurmrestd response read: its HTTP status, its JSON and Slurm's errors in it, and whether
Slurm said anything about the job at all ("no answer" must change nothing)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ...schedulers.slurm_json import text_of

# Slurm error numbers (slurm_errno.h) that mean "slurmctld or slurmdbd gave no answer about the
# job": a request must then change nothing. Every other error is Slurm's answer.
NO_ANSWER_RANGES = (
    range(-1, 1),  # "Unspecified error": also what a token slurmctld rejects turns into
    range(1000, 2000),  # communication, protocol and authentication failures
    range(5000, 7001),  # socket errors (5005 is a rejected token), auth plugins, 7000 no database
)
NO_ANSWER_NUMBERS = frozenset(
    {
        2007,  # Unable to create job record, try again
        2027,  # Slurm backup controller in standby mode
        2103,  # Job update not available right now ... try again in a bit
        2131,  # Controller is in standby mode, try a different controller
    }
)
# Errors that come with a good answer: slurmdbd's "Nothing found with query" (an empty list) and
# "Job is in held state" beside the id of a job submitted with --hold.
NOTES = frozenset({9003, 2042})
# The errors a token signed with the wrong key (or for the wrong user) produces: worth a hint.
# 401: no token; 511 (Network Authentication Required): slurmrestd 24.11's answer to a token
# slurmctld refused.
TOKEN_SUSPECT_STATUSES = frozenset({401, 511})
TOKEN_SUSPECT_NUMBERS = frozenset({-1, 1007, 5005}) | frozenset(range(6000, 7000))


@dataclass(frozen=True)
class Answer:
    """One slurmrestd response: its HTTP status, its JSON (if any) and Slurm's errors in it."""

    request: str
    status: int
    body: dict = field(default_factory=dict)
    text: str = ""

    @classmethod
    def read(cls, request: str, status: int, raw: bytes) -> Answer:
        text = raw.decode(errors="replace")
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        return cls(request, status, body if isinstance(body, dict) else {}, text.strip())

    @property
    def errors(self) -> list[dict]:
        return [e for e in self.body.get("errors") or [] if isinstance(e, dict)]

    @staticmethod
    def number(error: dict) -> int:
        # Errors of the job parser say error_code, the others error_number.
        value = error.get("error_number", error.get("error_code"))
        return value if isinstance(value, int) else -1

    @property
    def problems(self) -> list[dict]:
        return [e for e in self.errors if self.number(e) not in NOTES]

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.body) and not self.problems

    @property
    def no_answer(self) -> bool:
        """Nothing about the job was said: the request must change nothing."""
        if self.status in (401, 403, 404, 405) or self.status >= 502 or not self.body:
            return True
        if self.status >= 500 and not self.problems:
            return True  # an error without Slurm's word on it
        return any(
            any(self.number(e) in r for r in NO_ANSWER_RANGES)
            or self.number(e) in NO_ANSWER_NUMBERS
            for e in self.errors
        )

    @property
    def token_suspect(self) -> bool:
        """Whether the token may be what was refused: no token (401), 24.11's 511, or an error
        a token signed with the wrong key produces."""
        return self.status in TOKEN_SUSPECT_STATUSES or any(
            self.number(e) in TOKEN_SUSPECT_NUMBERS for e in self.errors
        )

    def message(self) -> str:
        """Slurm's own words, with the request they answer."""
        details = []
        for error in self.problems:
            description, error_text = text_of(error.get("description")), text_of(error.get("error"))
            if description and error_text and not description.endswith(error_text):
                details.append(f"{description}: {error_text}")
            else:
                details.append(description or error_text)
        words = "; ".join(w for w in details if w) or self.text[:300] or "no details"
        hint = ""
        if self.token_suspect:
            hint = " (slurmrestd answers this way to a token signed with the wrong key, too)"
        return f"slurmrestd {self.request}: HTTP {self.status}: {words}{hint}"
