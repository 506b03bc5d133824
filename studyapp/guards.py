"""Requests refused before any view reads them: a NUL in the query, an anonymous body too large.

* A NUL character is never valid in a query parameter, and PostgreSQL cannot compare text
  with one: an admin list filter ``?status__exact=%00`` was a 500. It is a 400 here.
* Nobody logged in (a rater, the login page) sends more than ``ANONYMOUS_POST_MAX_BYTES``:
  without a cap Django spooled an 87 MB multipart body to disk before the CSRF check had
  even looked at it. The declared length is checked before a byte of the body is read
  (Django reads no more than the declared length, so a body without one is read as empty).

Both raise what Django answers with its 400 page (``SuspiciousOperation`` family), so rater
URLs get the project's own page (``errors.py``) and the event is logged as a security one.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import BadRequest, RequestDataTooBig
from django.http import HttpRequest, HttpResponse


class RequestGuardsMiddleware:
    """After authentication (it asks who is logged in), before any view reads the body."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.META.get("QUERY_STRING", "") or any(
            "\x00" in key or "\x00" in value for key, values in request.GET.lists() for value in values
        ):
            raise BadRequest("a NUL character in the query string")
        if request.method == "POST" and not request.user.is_authenticated:
            try:
                declared = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                raise BadRequest("an unreadable Content-Length") from None
            if declared > settings.ANONYMOUS_POST_MAX_BYTES:
                raise RequestDataTooBig(
                    f"an anonymous POST of {declared} bytes (at most {settings.ANONYMOUS_POST_MAX_BYTES})"
                )
        return self.get_response(request)
