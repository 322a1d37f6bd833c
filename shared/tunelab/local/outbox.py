"""Every email the embedded SES sends becomes a file in the outbox folder, and one log line.

moto keeps sent messages in its SES backend (`sent_messages`; SESv2 sends land there too). A thread
reads that list and writes each message once to `<data dir>/outbox/<time>-<to>-<subject>.eml` — an
RFC 5322 message (CRLF line ends) with the text and the HTML parts — and logs
`email to <to>: <subject>`.

moto's SESv2 `SendEmail` keeps only one body of a Simple message (the HTML when there is one).
`capture_sesv2_simple()` wraps that one request handler to remember both bodies by message id, so
the file has the text part the sender wrote; without it (SES v1 sends) the text part is made from
the HTML.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_string
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

logger = logging.getLogger("tunelab.local.outbox")

OUTBOX_DIR = "outbox"
_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]+")


@dataclass(frozen=True)
class SimpleContent:
    """A Simple message as its sender wrote it."""

    subject: str
    text: str | None
    html: str | None


_CAPTURED: dict[str, SimpleContent] = {}
_CAPTURE_LOCK = threading.Lock()
_CAPTURE_ORIGINAL: Callable[[Any], str] | None = None


def capture_sesv2_simple() -> Callable[[], None]:
    """Remember the subject, text and HTML of SESv2 Simple sends by message id; returns the undo."""
    global _CAPTURE_ORIGINAL  # noqa: PLW0603  # one wrapper per process, like the Lambda seam
    from moto.sesv2.responses import SESV2Response  # noqa: PLC0415  # moto is the local runtime's

    with _CAPTURE_LOCK:
        if _CAPTURE_ORIGINAL is not None:
            return lambda: None
        original: Callable[[Any], str] = SESV2Response.__dict__["send_email"]
        _CAPTURE_ORIGINAL = original

    def send_email(self: Any) -> str:
        answer = original(self)
        try:
            simple = (json.loads(self.body).get("Content") or {}).get("Simple")
            message_id = json.loads(answer).get("MessageId")
            if simple and message_id:
                body = simple.get("Body") or {}
                content = SimpleContent(
                    subject=str((simple.get("Subject") or {}).get("Data", "")),
                    text=(body.get("Text") or {}).get("Data"),
                    html=(body.get("Html") or {}).get("Data"),
                )
                with _CAPTURE_LOCK:
                    _CAPTURED[str(message_id)] = content
        except (ValueError, AttributeError):  # a body moto accepted but we cannot read: keep moto's
            logger.debug("could not read an SESv2 send's content", exc_info=True)
        return answer

    SESV2Response.send_email = send_email  # type: ignore[method-assign]

    def undo() -> None:
        global _CAPTURE_ORIGINAL  # noqa: PLW0603
        with _CAPTURE_LOCK:
            if _CAPTURE_ORIGINAL is not None:
                SESV2Response.send_email = _CAPTURE_ORIGINAL  # type: ignore[method-assign, assignment]
                _CAPTURE_ORIGINAL = None
            _CAPTURED.clear()

    return undo


class _TextOf(HTMLParser):
    """The text of an HTML body: paragraphs and line breaks kept, tags dropped."""

    _BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "table", "ul", "ol"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"style", "script", "head"}:
            self._skip += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in {"style", "script", "head"}:
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """A plain-text rendition of an HTML body."""
    parser = _TextOf()
    parser.feed(html)
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _looks_like_html(body: str) -> bool:
    return bool(re.search(r"<(html|body|p|div|br|table|h[1-6])\b", body, re.IGNORECASE))


def _recipients(destinations: Any) -> tuple[list[str], list[str]]:
    if isinstance(destinations, dict):
        return list(destinations.get("ToAddresses", [])), list(destinations.get("CcAddresses", []))
    return list(destinations or []), []


def file_name(sent_at: datetime, to: str, subject: str, max_subject: int = 60) -> str:
    """`<time>-<to>-<subject>.eml` with only file-name-safe characters."""
    stamp = sent_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    safe_to = _UNSAFE.sub("_", to)[:80] or "nobody"
    safe_subject = _UNSAFE.sub("-", subject).strip("-")[:max_subject] or "no-subject"
    return f"{stamp}-{safe_to}-{safe_subject}.eml"


def build_message(
    *,
    message_id: str,
    sender: str,
    to: list[str],
    cc: list[str],
    subject: str,
    text: str,
    html: str | None,
    sent_at: datetime,
) -> EmailMessage:
    """An RFC 5322 message: the text part, and the HTML part as its alternative when there is one."""
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = subject
    message["Date"] = format_datetime(sent_at.astimezone(UTC))
    message["Message-ID"] = make_msgid(idstring=message_id, domain="tunelab.local")
    message["X-SES-Message-ID"] = message_id
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


@dataclass
class Outbox:
    """Writes each message of moto's SES backend (`sent_messages()`) to `folder` once."""

    folder: Path
    sent_messages: Callable[[], list[Any]]
    poll_interval: float = 0.5
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    written: dict[str, Path] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)  # the emails are the operator's
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tunelab-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.flush()  # what was sent just before the stop is written too

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.flush()
            except Exception:  # one unreadable message must not stop the outbox
                logger.exception("writing the outbox failed")

    def flush(self) -> list[Path]:
        """Write the messages not yet written; their files."""
        with self._lock:
            paths = []
            for message in list(self.sent_messages()):
                message_id = str(getattr(message, "id", ""))
                if not message_id or message_id in self.written:
                    continue
                path = self._write(message_id, message)
                self.written[message_id] = path
                paths.append(path)
            return paths

    def files(self) -> Iterator[Path]:
        return iter(sorted(self.folder.glob("*.eml")))

    def _write(self, message_id: str, message: Any) -> Path:
        sent_at = self.clock()
        raw = getattr(message, "raw_data", None)
        if isinstance(raw, str):
            parsed = message_from_string(raw, _class=EmailMessage, policy=SMTP)
            to_list = list(getattr(message, "destinations", []) or [])
            subject = str(parsed.get("Subject", ""))
            to = to_list[0] if to_list else str(parsed.get("To", ""))
            data = parsed.as_bytes()
        else:
            with _CAPTURE_LOCK:
                captured = _CAPTURED.pop(message_id, None)
            body = str(getattr(message, "body", "") or "")
            subject = captured.subject if captured else str(getattr(message, "subject", ""))
            if captured is not None:
                html = captured.html
                text = captured.text if captured.text is not None else html_to_text(html or "")
            elif _looks_like_html(body):
                html, text = body, html_to_text(body)
            else:
                html, text = None, body
            to_list, cc = _recipients(getattr(message, "destinations", {}))
            to = to_list[0] if to_list else (cc[0] if cc else "")
            data = build_message(
                message_id=message_id,
                sender=str(getattr(message, "source", "")),
                to=to_list,
                cc=cc,
                subject=subject,
                text=text,
                html=html,
                sent_at=sent_at,
            ).as_bytes()
        path = self.folder / file_name(sent_at, to, subject)
        if path.exists():
            path = path.with_name(f"{path.stem}-{_UNSAFE.sub('_', message_id)[:40]}.eml")
        with path.open("wb") as handle:  # on disk before the send is answered (persistence)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        logger.info("email to %s: %s", to, subject)
        return path
