"""Rater-facing error pages: the project's own, whatever ``DEBUG`` says.

Django's debug pages list settings, URL patterns and a view's local variables: on a rater
page those name the deployment, and so the condition. A rater is never shown one, even on
a laptop running the zero-setup demo with ``DEBUG`` on. Researchers' pages (admin, panel)
keep Django's behaviour.

A database that drops the connection or stays locked mid-request is a *retryable* fault:
the rater gets a 503 page whose button sends the same answer again. Storing an answer is
idempotent (a page already saved is a no-op), so the retry stores it exactly once.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import Resolver404, resolve

logger = logging.getLogger(__name__)

RATER_PREFIX = "/r/"
# Every debug page of Django (technical_404/500, the CSRF page) carries this tag; the
# project's pages never do. It tells an exception turned into a response by Django itself
# (in another middleware, where no process_exception runs) from a rater page's own 4xx.
DEBUG_PAGE_MARK = b'<meta name="robots" content="NONE,NOARCHIVE">'
PAGE_FOR_STATUS = {400: "400.html", 403: "403.html", 404: "404.html"}
# Exceptions after which sending the same request again can succeed.
RETRYABLE = (OperationalError, InterfaceError)


def is_rater_path(path: str) -> bool:
    return path.startswith(RATER_PREFIX)


def _page(template: str, status: int, context: dict | None = None) -> HttpResponse:
    # No request context: an error page must render even when the database is gone.
    response = HttpResponse(render_to_string(template, context or {}), status=status)
    response["Cache-Control"] = "no-store"
    response.rater_error_page = True  # type: ignore[attr-defined]
    return response


def rater_error_response(request: HttpRequest, error: BaseException) -> HttpResponse:
    if isinstance(error, Http404):
        return _page("404.html", 404)
    if isinstance(error, PermissionDenied):
        return _page("403.html", 403)
    if isinstance(error, SuspiciousOperation):
        return _page("400.html", 400)
    if isinstance(error, RETRYABLE):
        logger.warning("retryable database fault on %s %s: %s", request.method, request.path, error)
        fields = []
        if request.method == "POST":
            fields = [(name, value) for name, values in request.POST.lists() for value in values]
        response = _page("503.html", 503, {"action": request.path, "fields": fields, "post": request.method == "POST"})
        response["Retry-After"] = "2"
        return response
    logger.error("error on rater page %s %s", request.method, request.path, exc_info=error)
    return _page("500.html", 500)


class RaterErrorPagesMiddleware:
    """Outermost middleware: rater URLs answer with the project's pages, never a debug page."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_rater_path(request.path_info):
            return self.get_response(request)
        try:
            resolve(request.path_info)
        except Resolver404:
            return _page("404.html", 404)
        response = self.get_response(request)
        if getattr(response, "rater_error_page", False) or response.streaming:
            return response
        if response.status_code >= 500 or DEBUG_PAGE_MARK in response.content:
            # An exception in another middleware (sessions, CSRF, a body too large) was turned
            # into Django's own response, a debug page when DEBUG is on: replace it.
            status = response.status_code
            return _page(PAGE_FOR_STATUS.get(status, "500.html"), status if status in PAGE_FOR_STATUS else 500)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_rater_path(request.path_info):
            return None
        return rater_error_response(request, exception)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A rater whose form outlived its session (or cookie) gets plain words and a way back."""
    if is_rater_path(request.path_info):
        return _page("403_csrf.html", 403)
    from django.views.csrf import csrf_failure as django_csrf_failure

    return django_csrf_failure(request, reason=reason)


__all__ = ["RaterErrorPagesMiddleware", "csrf_failure", "is_rater_path", "rater_error_response"]
