"""Console page of the demo's SMTP sink (``/demo/mail``), mounted only when the setting
``demo_mailbox_dir`` is set (`spillguard demo` sets it).

Received notices name customers, so the page is for the roles that send them
(``incidents:notify``: admin and dpo).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from spillguard.console.render import render
from spillguard.core.deps import AppSettings, ConsolePrincipal
from spillguard.core.errors import NotFound
from spillguard.core.roles import Permission
from spillguard.core.settings import Settings
from spillguard.core.views import remember
from spillguard.demo.mailbox import list_messages, read_message

router = APIRouter(include_in_schema=False)


class MailNotFound(NotFound):
    """No message of that name in the demo mailbox."""


def _mailbox(settings: Settings) -> Path:
    """The sink's directory (the router is mounted only when it is set)."""
    if settings.demo_mailbox_dir is None:
        raise MailNotFound("This server has no demo mailbox.")
    return settings.demo_mailbox_dir


@router.get("/demo/mail", response_class=HTMLResponse)
def mailbox_page(request: Request, settings: AppSettings, principal: ConsolePrincipal) -> Response:
    remember(request, principal).require(Permission.INCIDENTS_NOTIFY)
    directory = _mailbox(settings)
    messages, total = list_messages(directory)
    return render(
        request,
        "demo/mail.html",
        {"messages": messages, "total": total, "message": None},
        principal=principal,
    )


@router.get("/demo/mail/{name}", response_class=HTMLResponse)
def message_page(
    request: Request, name: str, settings: AppSettings, principal: ConsolePrincipal
) -> Response:
    remember(request, principal).require(Permission.INCIDENTS_NOTIFY)
    directory = _mailbox(settings)
    message = read_message(directory, name)
    if message is None:
        raise MailNotFound("No such message in the demo mailbox.")
    return render(
        request,
        "demo/mail.html",
        {"messages": [], "total": None, "message": message},
        principal=principal,
    )
