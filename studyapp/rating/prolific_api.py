"""A small client for Prolific's researcher API (https://docs.prolific.com/api-reference).

Only what running a rating study needs: list a study's submissions, approve them in bulk,
reject one with a category and a message, ask a participant to return, set up and pay
bonuses. Plain ``requests``; no Django here (the operations that touch the database are in
``studyapp.rating.prolific_ops``).

The token comes from the environment (``PROLIFIC_API_TOKEN``) and is sent only in the
``Authorization: Token ...`` header: it is kept out of ``repr``, error messages and logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import requests

DEFAULT_BASE_URL = "https://api.prolific.com"
TOKEN_ENV = "PROLIFIC_API_TOKEN"  # noqa: S105 (the name of the variable, not a token)
# Tests and staging point the client at a stand-in server with this.
BASE_URL_ENV = "PROLIFIC_API_URL"
# Prolific's rejection categories (transition endpoint, action REJECT).
REJECTION_CATEGORIES = (
    "TOO_QUICKLY", "TOO_SLOWLY", "FAILED_INSTRUCTIONS", "INCOMP_LONGITUDINAL", "FAILED_CHECK", "LOW_EFFORT",
    "MALINGERING", "NO_CODE", "BAD_CODE", "NO_DATA", "UNSUPP_DEVICE", "OTHER",
)  # fmt: skip
# Prolific refuses a rejection message shorter than this.
REJECTION_MESSAGE_MIN = 100
# Prolific recommends at most this many ids per bulk-approve request.
BULK_APPROVE_MAX = 1000


class ProlificError(RuntimeError):
    """A request Prolific refused or could not answer; the message never holds the token."""


@dataclass(frozen=True)
class Submission:
    id: str  # the SESSION_ID a rater's entry link carries
    participant: str  # the PROLIFIC_PID
    status: str  # ACTIVE, AWAITING REVIEW, APPROVED, REJECTED, RETURNED, TIMED-OUT, SCREENED OUT, ...
    study_code: str = ""

    @classmethod
    def from_api(cls, data: dict) -> Submission:
        return cls(
            id=str(data.get("id", "")),
            participant=str(data.get("participant_id") or data.get("participant") or ""),
            status=str(data.get("status", "")).upper().replace("_", " "),
            study_code=str(data.get("study_code") or data.get("entered_code") or ""),
        )


@dataclass(frozen=True)
class Bonus:
    participant: str
    amount: Decimal


def bonuses_parse(text: str, *, max_amount: Decimal = Decimal("50")) -> list[Bonus]:
    """Read ``participant_id,amount`` lines (a header line is allowed); raise ValueError naming the line.

    ``max_amount`` guards against a pence/pounds slip: Prolific reads ``30`` as 30.00 in the
    study's currency.
    """
    bonuses = []
    for number, line in enumerate(text.splitlines(), start=1):
        cells = [cell.strip() for cell in line.split(",")]
        if not any(cells) or (number == 1 and cells[0].lower() in {"participant_id", "participant", "id"}):
            continue
        if len(cells) != 2 or not cells[0].replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"line {number}: expected 'participant_id,amount', got {line!r}")
        try:
            amount = Decimal(cells[1])
        except InvalidOperation:
            raise ValueError(f"line {number}: {cells[1]!r} is not an amount") from None
        if not amount.is_finite() or amount <= 0 or amount > max_amount:
            raise ValueError(f"line {number}: amount {cells[1]} must be above 0 and at most {max_amount}")
        bonuses.append(Bonus(participant=cells[0], amount=amount.quantize(Decimal("0.01"))))
    if not bonuses:
        raise ValueError("no bonuses in the file")
    return bonuses


@dataclass
class ProlificClient:
    token: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 30.0
    session: requests.Session = field(default_factory=requests.Session, repr=False)

    @classmethod
    def from_env(cls) -> ProlificClient:
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise ProlificError(f"set {TOKEN_ENV} to an API token from Prolific (Settings > API tokens)")
        return cls(token=token, base_url=os.environ.get(BASE_URL_ENV, DEFAULT_BASE_URL).rstrip("/"))

    def _request(self, method: str, path: str, payload: dict | None = None) -> Any:
        url = f"{self.base_url}{path}" if path.startswith("/") else path
        try:
            response = self.session.request(
                method, url, json=payload, timeout=self.timeout, headers={"Authorization": f"Token {self.token}"}
            )
        except requests.RequestException as error:
            # The exception's text holds the URL, never the headers.
            raise ProlificError(f"{method} {path}: {type(error).__name__}") from None
        if response.status_code >= 400:
            detail = response.text[:300].replace(self.token, "***")
            raise ProlificError(f"{method} {path}: HTTP {response.status_code}: {detail}")
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    # --- Submissions -------------------------------------------------------------------

    def study_submissions(self, study_id: str) -> list[Submission]:
        """Every submission of a study, following the ``_links.next`` pages."""
        submissions: list[Submission] = []
        next_url: str | None = f"/api/v1/studies/{study_id}/submissions/"
        while next_url:
            page = self._request("GET", next_url) or {}
            submissions.extend(Submission.from_api(item) for item in page.get("results", []))
            next_url = ((page.get("_links") or {}).get("next") or {}).get("href")
        return submissions

    def submissions_approve(self, submission_ids: list[str]) -> None:
        for start in range(0, len(submission_ids), BULK_APPROVE_MAX):
            chunk = submission_ids[start : start + BULK_APPROVE_MAX]
            self._request("POST", "/api/v1/submissions/bulk-approve/", {"submission_ids": chunk})

    def submission_reject(self, submission_id: str, *, category: str, message: str) -> dict:
        if category not in REJECTION_CATEGORIES:
            raise ValueError(f"unknown rejection category {category!r}")
        if len(message) < REJECTION_MESSAGE_MIN:
            raise ValueError(f"Prolific needs a rejection message of at least {REJECTION_MESSAGE_MIN} characters")
        return self._request(
            "POST",
            f"/api/v1/submissions/{submission_id}/transition/",
            {"action": "REJECT", "rejection_category": category, "message": message},
        )

    def submission_request_return(self, submission_id: str, *, reasons: list[str]) -> dict:
        return self._request(
            "POST", f"/api/v1/submissions/{submission_id}/request-return/", {"request_return_reasons": reasons}
        )

    # --- Bonuses ------------------------------------------------------------------------

    def bonuses_set_up(self, study_id: str, bonuses: list[Bonus]) -> dict:
        """Prolific's first step: returns the bulk payment (its ``id``, ``amount``, ``fees``, ...)."""
        csv_bonuses = "\n".join(f"{bonus.participant},{bonus.amount}" for bonus in bonuses)
        return self._request(
            "POST", "/api/v1/submissions/bonus-payments/", {"study_id": study_id, "csv_bonuses": csv_bonuses}
        )

    def bonuses_pay(self, bulk_payment_id: str) -> Any:
        """Not idempotent on Prolific's side: call once per set-up."""
        return self._request("POST", f"/api/v1/bulk-bonus-payments/{bulk_payment_id}/pay/", {})
