"""The Prolific client and `manage.py prolific` against a stand-in of Prolific's API.

The stand-in is a real HTTP server on 127.0.0.1 started by the test; it answers with the
request and response shapes of Prolific's documentation (list study submissions with
``results`` and ``_links.next``, ``submissions/bulk-approve/``, ``submissions/{id}/transition/``,
``submissions/{id}/request-return/``, ``submissions/bonus-payments/`` then
``bulk-bonus-payments/{id}/pay/``) and refuses what Prolific refuses.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from studyapp.rating.models import BonusPayment, Participant, Slot
from studyapp.rating.prolific_api import Bonus, ProlificClient, bonuses_parse
from tests.factories import ParticipantFactory
from tests.studyapp.rating.helpers import Bot, build_rating_study

TOKEN = "tok-" + "s3cr3t" * 6
CHECK = {"position": 1, "text": "Attention check: please move the slider all the way to the right.", "expected": 100}


class StandIn(ThreadingHTTPServer):
    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.submissions: list[dict] = []
        self.calls: list[tuple[str, str, object]] = []
        self.bulk_payments: dict[str, dict] = {}
        self.paid: list[str] = []  # every pay call Prolific accepted: it pays each one, repeats too
        self.pay_fails = False  # answer the pay call with a server error (a lost payment confirmation)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: StandIn

    def log_message(self, *args):  # keep test output clean
        pass

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") == f"Token {TOKEN}":
            return True
        # Echo what was sent, as some servers do: the client must not print it back.
        self._send(401, {"error": {"detail": f"Invalid token: {self.headers.get('Authorization')}"}})
        return False

    def do_GET(self):
        self.server.calls.append(("GET", self.path, None))
        if not self._authorised():
            return
        base = "/api/v1/studies/prolific-study-1/submissions/"
        if self.path == base:
            half = len(self.server.submissions) // 2
            return self._send(
                200,
                {
                    "results": self.server.submissions[:half],
                    "_links": {"next": {"href": f"{self.server.url}{base}?page=2"}},
                },
            )
        if self.path == f"{base}?page=2":
            half = len(self.server.submissions) // 2
            return self._send(200, {"results": self.server.submissions[half:], "_links": {"next": {"href": None}}})
        return self._send(404, {"error": "not found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        self.server.calls.append(("POST", self.path, body))
        if not self._authorised():
            return
        parts = self.path.strip("/").split("/")
        if self.path == "/api/v1/submissions/bulk-approve/":
            if not isinstance(body.get("submission_ids"), list):
                return self._send(400, {"error": "submission_ids required"})
            return self._send(200, "The request to bulk approve has been made successfully.")
        if parts[:3] == ["api", "v1", "submissions"] and parts[-1] == "transition":
            if body.get("action") == "REJECT" and (
                len(body.get("message", "")) < 100 or not body.get("rejection_category")
            ):
                return self._send(400, {"error": "message of 100 characters and rejection_category required"})
            return self._send(200, {"id": parts[3], "status": "REJECTED"})
        if parts[:3] == ["api", "v1", "submissions"] and parts[-1] == "request-return":
            if not body.get("request_return_reasons"):
                return self._send(400, {"error": "request_return_reasons required"})
            return self._send(
                200, {"id": parts[3], "status": "AWAITING REVIEW", "return_requested": "2026-12-01T22:00:00Z"}
            )
        if self.path == "/api/v1/submissions/bonus-payments/":
            lines = [line.split(",") for line in body["csv_bonuses"].split("\n")]
            amount = sum(Decimal(cells[1]) for cells in lines)
            total = float(amount)
            payment = {"id": f"bulk{len(self.server.bulk_payments)}", "study": body["study_id"], "amount": total,
                       "fees": total / 3, "total_amount": total * 4 / 3, "vat": 0}  # fmt: skip
            self.server.bulk_payments[payment["id"]] = payment
            return self._send(201, payment)
        if parts[:3] == ["api", "v1", "bulk-bonus-payments"] and parts[-1] == "pay":
            if parts[3] not in self.server.bulk_payments:
                return self._send(404, {"error": "no such bulk payment"})
            if self.server.pay_fails:
                return self._send(502, {"error": "Bad gateway"})
            self.server.paid.append(parts[3])
            return self._send(200, f"Bulk bonus payment with ID {parts[3]} is being processed asynchronously.")
        return self._send(404, {"error": "not found"})


@pytest.fixture
def prolific(monkeypatch):
    server = StandIn()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("PROLIFIC_API_TOKEN", TOKEN)
    monkeypatch.setenv("PROLIFIC_API_URL", server.url)
    yield server
    server.shutdown()
    server.server_close()


def _submission(pid: str, status: str) -> dict:
    return {"id": f"sess-{pid}", "participant_id": pid, "status": status, "started_at": "2026-12-01T21:00:00Z",
            "study_code": "", "time_taken": 600, "reward": 300}  # fmt: skip


def _run(*args) -> str:
    out = io.StringIO()
    call_command("prolific", *args, stdout=out, stderr=out)
    return out.getvalue()


def _posts(server: StandIn) -> list[tuple[str, object]]:
    return [(path, body) for method, path, body in server.calls if method == "POST"]


@pytest.mark.django_db
def test_review_approves_asks_to_return_and_frees_returned_slots_at_once(prolific, caplog):
    caplog.set_level(logging.DEBUG)
    built = build_rating_study(
        raters=2,
        per_rater=4,
        attention_checks=[CHECK],
        attention_screen_out_after=1,
        prolific_study_id="prolific-study-1",
    )
    slug = built.study.slug
    done = Bot(Client(), slug, "5f0000000000000000013301")
    done.walk()
    declined = Bot(Client(), slug, "5f0000000000000000013302")
    declined.post(declined.follow(declined.enter()).request["PATH_INFO"], {"choice": "decline"})
    screened = Bot(Client(), slug, "5f0000000000000000013303", attention_answer="3")
    screened.walk()
    returned = Bot(Client(), slug, "5f0000000000000000013304")
    returned.walk(stop_after_pages=1)
    returner = Participant.objects.get(prolific_pid=returned.pid)
    held = Slot.objects.get(participant=returner)
    released_before = held.times_released  # the screened-out rater had this slot before
    prolific.submissions = [
        _submission(done.pid, "AWAITING REVIEW"),
        _submission(declined.pid, "AWAITING REVIEW"),
        _submission(screened.pid, "AWAITING REVIEW"),
        _submission(returned.pid, "RETURNED"),
        _submission("5f00000000000000000133ff", "AWAITING REVIEW"),
        _submission("5f00000000000000000133fe", "APPROVED"),
    ]

    plan = _run("review", slug, "--dry-run")
    assert f"would approve sess-{done.pid}" in plan
    assert f"would ask sess-{declined.pid} (participant {declined.pid}) to return: Withdrew consent." in plan
    assert f"would review sess-{screened.pid}" in plan  # no rejection unless asked for
    assert f"would free the slot of sess-{returned.pid}" in plan
    assert "would review sess-5f00000000000000000133ff" in plan and "no participation" in plan
    assert _posts(prolific) == []  # a dry run sends nothing...
    assert Slot.objects.get(pk=held.pk).participant_id == returner.pk  # ...and changes nothing here
    assert len([c for c in prolific.calls if c[0] == "GET"]) == 2  # both pages of submissions

    _run("review", slug, "--reject-failed-checks")
    posts = dict(_posts(prolific))
    assert posts["/api/v1/submissions/bulk-approve/"] == {"submission_ids": [f"sess-{done.pid}"]}
    assert posts[f"/api/v1/submissions/sess-{declined.pid}/request-return/"] == {
        "request_return_reasons": ["Withdrew consent."]
    }
    rejection = posts[f"/api/v1/submissions/sess-{screened.pid}/transition/"]
    assert rejection["action"] == "REJECT" and rejection["rejection_category"] == "FAILED_CHECK"
    assert len(rejection["message"]) >= 100
    assert len(posts) == 3  # the unknown and the approved submissions are left alone

    # The returned rater's slot is free now, not after the timeout; their ratings stay, flagged.
    held.refresh_from_db()
    returner.refresh_from_db()
    assert held.status == Slot.Status.FREE and held.participant is None
    assert held.times_released == released_before + 1
    assert returner.step == Participant.Step.TIMED_OUT
    assert {"returned_on_prolific", "timed_out_partial"} <= set(returner.flags)
    assert returner.ratings.count() == 3
    nxt = Bot(Client(), slug, "5f0000000000000000013305")
    nxt.walk(stop_after_pages=0)
    assert Slot.objects.get(participant__prolific_pid=nxt.pid).pk == held.pk

    assert TOKEN not in caplog.text


@pytest.mark.django_db
def test_bonuses_from_a_csv_are_set_up_then_paid_once(prolific, tmp_path):
    built = build_rating_study(prolific_study_id="prolific-study-1")
    for pid in ("5f0000000000000000013401", "5f0000000000000000013402"):
        ParticipantFactory(study=built.study, prolific_pid=pid)
    csv = tmp_path / "bonuses.csv"
    csv.write_text("participant_id,amount\n5f0000000000000000013401,0.50\n5f0000000000000000013402,1.25\n")

    dry = _run("bonuses", built.study.slug, "--csv", str(csv), "--dry-run")
    assert "would pay 5f0000000000000000013402 1.25" in dry and "would pay 2 bonuses, 1.75" in dry
    assert _posts(prolific) == []

    paid = _run("bonuses", built.study.slug, "--csv", str(csv))
    assert _posts(prolific) == [
        (
            "/api/v1/submissions/bonus-payments/",
            {
                "study_id": "prolific-study-1",
                "csv_bonuses": "5f0000000000000000013401,0.50\n5f0000000000000000013402,1.25",
            },
        ),
        ("/api/v1/bulk-bonus-payments/bulk0/pay/", {}),
    ]
    assert "paid 2 bonuses" in paid and "bulk0" in paid


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5f01,abc\n", "line 1: 'abc' is not an amount"),
        ("participant_id,amount\n5f01,75\n", "line 2: amount 75 must be above 0 and at most 50"),
        ("5f01,-1\n", "must be above 0"),
        ("5f01;1.00\n", "line 1: expected 'participant_id,amount'"),
        ("participant_id,amount\n", "no bonuses"),
    ],
)
@pytest.mark.django_db
def test_a_bad_bonus_csv_is_one_error_with_exit_2_and_pays_nothing(prolific, tmp_path, text, message):
    built = build_rating_study(prolific_study_id="prolific-study-1")
    ParticipantFactory(study=built.study, prolific_pid="5f01")
    csv = tmp_path / "bonuses.csv"
    csv.write_text(text)
    with pytest.raises(CommandError, match=message) as raised:
        _run("bonuses", built.study.slug, "--csv", str(csv))
    assert raised.value.returncode == 2
    assert prolific.calls == []


@pytest.mark.django_db
def test_a_refused_token_is_a_clear_error_that_never_shows_the_token(prolific, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    built = build_rating_study(prolific_study_id="prolific-study-1")
    monkeypatch.setenv("PROLIFIC_API_TOKEN", "wrong-" + TOKEN)
    with pytest.raises(CommandError) as raised:
        _run("review", built.study.slug)
    assert raised.value.returncode == 2 and "HTTP 401" in str(raised.value)
    assert TOKEN not in str(raised.value) and TOKEN not in caplog.text
    assert "***" in str(raised.value)  # the stand-in echoed the token back; the client blanked it

    monkeypatch.delenv("PROLIFIC_API_TOKEN")
    with pytest.raises(CommandError, match="set PROLIFIC_API_TOKEN") as raised:
        _run("review", built.study.slug)
    assert raised.value.returncode == 2


@pytest.mark.django_db
def test_a_study_without_a_prolific_id_or_an_unknown_slug_exits_2(prolific):
    built = build_rating_study(prolific_study_id="")
    for slug, message in ((built.study.slug, "no prolific.study_id"), ("nope", "no study 'nope'")):
        with pytest.raises(CommandError, match=message) as raised:
            _run("review", slug)
        assert raised.value.returncode == 2
    assert prolific.calls == []


def test_the_client_keeps_the_token_out_of_its_repr_and_checks_rejections():
    client = ProlificClient(token=TOKEN, base_url="http://127.0.0.1:9")
    assert TOKEN not in repr(client)
    with pytest.raises(ValueError, match="at least 100"):
        client.submission_reject("s1", category="FAILED_CHECK", message="too short")
    with pytest.raises(ValueError, match="unknown rejection category"):
        client.submission_reject("s1", category="BORED", message="x" * 120)
    assert bonuses_parse("a1,1\nb2,0.1\n") == [Bonus("a1", Decimal("1.00")), Bonus("b2", Decimal("0.10"))]


# --- Issue 20, point 10: bonuses only to participants, once, with a ledger ----------------------


def _bonus_study():
    built = build_rating_study(prolific_study_id="prolific-study-1")
    for pid in ("5f0000000000000000013501", "5f0000000000000000013502"):
        ParticipantFactory(study=built.study, prolific_pid=pid)
    return built


@pytest.mark.django_db
def test_a_bonus_to_an_id_that_is_no_participant_is_refused_naming_every_one(prolific, tmp_path):
    built = _bonus_study()
    csv = tmp_path / "bonuses.csv"
    csv.write_text("5f0000000000000000013501,0.50\n5fdeadbeef00000000000001,1.00\n5fdeadbeef00000000000002,1.00\n")
    for extra in ([], ["--dry-run"]):
        with pytest.raises(CommandError) as raised:
            _run("bonuses", built.study.slug, "--csv", str(csv), *extra)
        assert raised.value.returncode == 2
        assert "not participants of study" in str(raised.value)
        assert "5fdeadbeef00000000000001, 5fdeadbeef00000000000002" in str(raised.value)
    csv.write_text("5f0000000000000000013501,0.50\n5f0000000000000000013501,0.50\n")
    with pytest.raises(CommandError, match=r"listed more than once.*5f0000000000000000013501") as raised:
        _run("bonuses", built.study.slug, "--csv", str(csv))
    assert raised.value.returncode == 2
    assert prolific.calls == [] and not BonusPayment.objects.exists()


@pytest.mark.django_db
def test_a_bonus_is_paid_once_and_the_ledger_says_what_was_paid(prolific, tmp_path):
    built = _bonus_study()
    csv = tmp_path / "bonuses.csv"
    csv.write_text("participant_id,amount\n5f0000000000000000013501,0.50\n5f0000000000000000013502,1.25\n")
    _run("bonuses", built.study.slug, "--csv", str(csv))
    ledger = list(BonusPayment.objects.select_related("participant").order_by("participant__prolific_pid"))
    assert [(row.participant.prolific_pid, row.amount, row.bulk_payment_id) for row in ledger] == [
        ("5f0000000000000000013501", Decimal("0.50"), "bulk0"),
        ("5f0000000000000000013502", Decimal("1.25"), "bulk0"),
    ]
    assert all(row.paid_at is not None for row in ledger)
    assert prolific.paid == ["bulk0"]

    # The same file again: refused, naming what was paid when; nothing is set up or paid.
    with pytest.raises(CommandError) as raised:
        _run("bonuses", built.study.slug, "--csv", str(csv))
    assert raised.value.returncode == 2
    message = str(raised.value)
    assert "already in the bonus ledger" in message and "--again" in message
    assert "5f0000000000000000013501 0.50 (bulk payment bulk0, paid " in message
    assert len([path for path, _ in _posts(prolific) if path.endswith("bonus-payments/")]) == 1
    assert prolific.paid == ["bulk0"]
    # Told to, it pays a second bonus, and the ledger has both.
    _run("bonuses", built.study.slug, "--csv", str(csv), "--again")
    assert prolific.paid == ["bulk0", "bulk1"] and BonusPayment.objects.count() == 4


@pytest.mark.django_db
def test_a_payment_prolific_did_not_confirm_stays_in_the_ledger_and_blocks_a_second_try(prolific, tmp_path):
    built = _bonus_study()
    csv = tmp_path / "bonuses.csv"
    csv.write_text("5f0000000000000000013501,0.50\n")
    prolific.pay_fails = True
    with pytest.raises(CommandError) as raised:
        _run("bonuses", built.study.slug, "--csv", str(csv))
    assert raised.value.returncode == 2
    assert "set up as bulk payment bulk0 but the payment was not confirmed" in str(raised.value)
    row = BonusPayment.objects.get()
    assert row.bulk_payment_id == "bulk0" and row.paid_at is None
    prolific.pay_fails = False
    with pytest.raises(CommandError, match=r"bulk payment bulk0, set up, payment not confirmed"):
        _run("bonuses", built.study.slug, "--csv", str(csv))
    assert prolific.paid == []


@pytest.mark.django_db
def test_partial_bonuses_are_written_from_the_participants_table_and_paid(prolific, tmp_path):
    built = build_rating_study(raters=4, per_rater=4, prolific_study_id="prolific-study-1", slot_timeout_minutes=1)
    slug = built.study.slug
    Bot(Client(), slug, "5f0000000000000000013601").walk()  # complete: no partial bonus
    for pid, pages in (("5f0000000000000000013602", 1), ("5f0000000000000000013603", 3)):
        Bot(Client(), slug, pid).walk(stop_after_pages=pages)
    Participant.objects.filter(prolific_pid__in=["5f0000000000000000013602", "5f0000000000000000013603"]).update(
        last_seen_at=timezone.now() - timedelta(minutes=5)
    )
    Bot(Client(), slug, "5f0000000000000000013604").walk(stop_after_pages=0)  # claims a silent rater's slot
    from studyapp.rating.services import slots_release_stale

    slots_release_stale(study=built.study)
    out = tmp_path / "partial.csv"
    said = _run("partial-bonuses", slug, "--per-page", "0.15", "--out", str(out))
    assert out.read_text() == ("participant_id,amount\n5f0000000000000000013602,0.15\n5f0000000000000000013603,0.45\n")
    assert "2 partial-completion bonuses, 0.60" in said
    _run("bonuses", slug, "--csv", str(out))
    assert prolific.paid == ["bulk0"]
    # Paid ones are left out of the next file.
    _run("partial-bonuses", slug, "--per-page", "0.15", "--out", str(out))
    assert out.read_text() == "participant_id,amount\n"
