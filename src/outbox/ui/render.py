"""Templates and the answers built from them: pages, partials, error pages."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from outbox import __version__
from outbox.ui import notices
from outbox.ui.session import Session

HERE = Path(__file__).parent
HTMX = "htmx-2.0.11.min.js"


def _when(value: Any) -> str:
    """An absolute time in UTC to the millisecond, e.g. 2026-12-02 11:09:05.716 UTC."""
    if isinstance(value, str) and value:
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
    return ""


templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["when"] = _when
templates.env.globals.update(version=__version__, htmx=HTMX)


def page(request: Request, template: str, session: Session | None, code: int = 200,
         **context: Any) -> HTMLResponse:
    if "notice" in context:
        context["notice"] = notices.shown(request, session, context["notice"])
    return templates.TemplateResponse(request, template, {"session": session, **context},
                                      status_code=code)


def error_page(request: Request, status: int, title: str, message: str, hint: str = "",
               session: Session | None = None) -> HTMLResponse:
    return page(request, "error.html", session, code=status, title=title, message=message,
                hint=hint)
