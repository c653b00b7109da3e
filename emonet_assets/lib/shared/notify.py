"""Alerts about failed runs and asset checks, sent to a webhook, e-mail and the storage root.

Sending never raises: an alert that cannot be delivered must not turn into a second failure of the run
that raised it. Every channel reports a `Delivery` instead, and the local channel keeps a copy of every
alert in the `alerts` table so nothing is lost when the network channels are down.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import smtplib
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Literal, Protocol

import polars as pl

from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.shared.tables import Table

log = logging.getLogger(__name__)

AlertKind = Literal["run_failure", "check_failure"]
Severity = Literal["ERROR", "WARN"]
KINDS = ("run_failure", "check_failure")
SEVERITIES = ("ERROR", "WARN")
LOG_LEVELS = {"ERROR": logging.ERROR, "WARN": logging.WARNING}
SUBJECT_PREFIX = "[emonet-face]"

# Slack rejects a payload whose blocks exceed these lengths instead of truncating them.
_HEADER_MAX = 150
_FIELD_MAX = 2000
_SECTION_MAX = 3000
_FIELDS_MAX = 10

ALERTS_SCHEMA = {
    "kind": pl.String,
    "title": pl.String,
    "severity": pl.String,
    "asset": pl.String,
    "check": pl.String,
    "run_id": pl.String,
    "run_url": pl.String,
    "message": pl.String,
    "metadata": pl.String,
    "created_at": pl.Datetime("us", "UTC"),
}


@dataclass(frozen=True)
class Alert:
    kind: AlertKind
    title: str
    severity: Severity
    asset: str | None
    check: str | None
    run_id: str
    run_url: str
    message: str
    metadata: dict[str, str | float | int] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"alert kind {self.kind!r} is not one of {KINDS}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"alert severity {self.severity!r} is not one of {SEVERITIES}")
        if self.created_at.tzinfo is None:
            raise ValueError("alert created_at must be timezone-aware (UTC)")

    def as_record(self) -> dict:
        """Plain JSON-safe fields, for receivers that do not read Slack blocks."""
        return {
            "kind": self.kind,
            "title": self.title,
            "severity": self.severity,
            "asset": self.asset,
            "check": self.check,
            "run_id": self.run_id,
            "run_url": self.run_url,
            "message": self.message,
            "metadata": {key: _json_safe(value) for key, value in self.metadata.items()},
            "created_at": self.created_at.astimezone(UTC).isoformat(),
        }


@dataclass(frozen=True)
class Delivery:
    channel: str
    ok: bool
    attempts: int
    error: str | None = None


class Channel(Protocol):
    name: str

    def send(self, alert: Alert) -> Delivery: ...


def _json_safe(value):
    """NaN and infinity are not JSON; a webhook receiver would reject the whole payload over one value."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _run_link(alert: Alert) -> str:
    if not alert.run_url:
        return _escape(alert.run_id)
    return f"<{alert.run_url.replace('>', '%3E').replace('|', '%7C')}|{_escape(alert.run_id)}>"


def _field(name: str, value: str) -> dict:
    return {"type": "mrkdwn", "text": _clip(f"*{name}*\n{value}", _FIELD_MAX)}


def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, _SECTION_MAX)}}


def slack_payload(alert: Alert) -> dict:
    """Slack's `text` + `blocks`, with the raw alert under `alert` for any other JSON receiver."""
    target = " / ".join(part for part in (alert.asset, alert.check) if part)
    text = f"{alert.severity}: {alert.title}" + (f" ({target})" if target else "") + f" — run {alert.run_id}"
    if alert.run_url:
        text += f" {alert.run_url}"
    summary = [
        _field("Asset", _escape(alert.asset or "—")),
        _field("Check", _escape(alert.check or "—")),
        _field("Severity", alert.severity),
        _field("Run", _run_link(alert)),
    ]
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(alert.title or alert.kind, _HEADER_MAX)}},
        {"type": "section", "fields": summary},
    ]
    if alert.message:
        blocks.append(_section(_escape(alert.message)))
    items = [(_escape(str(key)), _escape(str(value))) for key, value in alert.metadata.items()]
    if items:
        blocks.append({"type": "section", "fields": [_field(key, value) for key, value in items[:_FIELDS_MAX]]})
    if len(items) > _FIELDS_MAX:
        blocks.append(_section("\n".join(f"*{key}*: {value}" for key, value in items[_FIELDS_MAX:])))
    return {"text": text, "blocks": blocks, "alert": alert.as_record()}


def _deliver(
    channel: str,
    attempt: Callable[[], None],
    retryable: Callable[[BaseException], bool],
    retries: int,
    backoff_s: float,
) -> Delivery:
    """Try once plus `retries` more times while the failure looks transient, sleeping backoff_s * 2**n between."""
    attempts = 0
    while True:
        attempts += 1
        try:
            attempt()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if attempts > retries or not retryable(exc):
                return Delivery(channel=channel, ok=False, attempts=attempts, error=error)
            time.sleep(backoff_s * 2 ** (attempts - 1))
        else:
            return Delivery(channel=channel, ok=True, attempts=attempts)


def _webhook_retryable(exc: BaseException) -> bool:
    """5xx, timeouts and connection errors pass; a 4xx means the request itself is wrong and will stay wrong."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500
    return isinstance(exc, OSError | http.client.HTTPException)


class WebhookChannel:
    name = "webhook"

    def __init__(
        self,
        url: str,
        timeout_s: float = 5,
        retries: int = 3,
        backoff_s: float = 0.5,
        headers: dict[str, str] | None = None,
    ):
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"webhook URL {url!r} must be http(s)")
        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.headers = {"Content-Type": "application/json", "User-Agent": "emonet-face-notify"} | (headers or {})

    def send(self, alert: Alert) -> Delivery:
        body = json.dumps(slack_payload(alert)).encode()

        def post() -> None:
            request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()

        return _deliver(self.name, post, _webhook_retryable, self.retries, self.backoff_s)


def _smtp_retryable(exc: BaseException) -> bool:
    """A 4xx reply or a dropped connection is transient in SMTP; a 5xx reply, bad credentials or an
    untrusted certificate will fail the same way again."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(exc, smtplib.SMTPException | ssl.SSLCertVerificationError):
        return False
    return isinstance(exc, OSError)


def email_body(alert: Alert) -> str:
    lines = [
        alert.title,
        "",
        f"Kind: {alert.kind}",
        f"Severity: {alert.severity}",
        f"Asset: {alert.asset or '-'}",
        f"Check: {alert.check or '-'}",
        f"Run: {alert.run_id}",
        f"Run link: {alert.run_url or '-'}",
        f"Time: {alert.created_at.astimezone(UTC).isoformat()}",
        "",
        alert.message,
    ]
    if alert.metadata:
        lines += ["", "Metadata:", *(f"  {key}: {value}" for key, value in alert.metadata.items())]
    return "\n".join(lines) + "\n"


class EmailChannel:
    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: list[str],
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout_s: float = 10,
        retries: int = 2,
        backoff_s: float = 0.5,
    ):
        if not recipients:
            raise ValueError("an e-mail channel needs at least one recipient")
        self.host = host
        self.port = port
        self.sender = sender
        self.recipients = list(recipients)
        self.username = username
        self.password = password
        self.starttls = starttls
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s

    def message(self, alert: Alert) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = f"{SUBJECT_PREFIX} {alert.severity}: {alert.title}"
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Date"] = formatdate(alert.created_at.timestamp(), usegmt=True)
        message["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        message.set_content(email_body(alert))
        return message

    def send(self, alert: Alert) -> Delivery:
        message = self.message(alert)

        def submit() -> None:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(message, from_addr=self.sender, to_addrs=self.recipients)

        return _deliver(self.name, submit, _smtp_retryable, self.retries, self.backoff_s)


class LocalChannel:
    """The alert history in the storage root. Assumes one writer at a time: each alert rewrites the table."""

    name = "local"

    def __init__(self, store: Store, table: Table = Table.ALERTS):
        self.store = store
        self.table = table

    def send(self, alert: Alert) -> Delivery:
        log.log(
            LOG_LEVELS[alert.severity],
            "%s: %s (asset=%s check=%s run=%s %s) %s",
            alert.kind,
            alert.title,
            alert.asset,
            alert.check,
            alert.run_id,
            alert.run_url,
            alert.message,
        )
        try:
            record = alert.as_record()
            row = record | {
                "metadata": json.dumps(record["metadata"], sort_keys=True),
                "created_at": alert.created_at.astimezone(UTC),
            }
            frame = pl.DataFrame([row], schema=ALERTS_SCHEMA)
            if self.store.table_partitions(self.table):
                frame = pl.concat([self.store.read_table(self.table), frame], how="diagonal_relaxed")
            self.store.write_table(self.table, frame)
        except Exception as exc:
            return Delivery(channel=self.name, ok=False, attempts=1, error=f"{type(exc).__name__}: {exc}")
        return Delivery(channel=self.name, ok=True, attempts=1)


class Notifier:
    def __init__(self, channels: list[Channel]):
        self.channels = list(channels)

    def send(self, alert: Alert) -> list[Delivery]:
        """Every channel gets the alert; one that fails, even by raising, does not stop the rest."""
        deliveries = []
        for channel in self.channels:
            name = getattr(channel, "name", type(channel).__name__)
            try:
                delivery = channel.send(alert)
            except Exception as exc:
                delivery = Delivery(channel=name, ok=False, attempts=1, error=f"{type(exc).__name__}: {exc}")
            if not delivery.ok:
                log.warning("alert %r not delivered via %s: %s", alert.title, delivery.channel, delivery.error)
            deliveries.append(delivery)
        return deliveries


def _flag(value) -> bool:
    """Settings read from the environment arrive as strings; "false" must not count as set."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _setting(settings: dict, key: str, default):
    """An unset or blank value takes the default; 0 (no retries) is a real value."""
    value = settings.get(key)
    return default if value is None or value == "" else value


def _recipients(value) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    return [address.strip() for address in value or [] if address and address.strip()]


def notifier_from_settings(settings: dict, store: Store) -> Notifier:
    """The local channel always; a webhook and e-mail when configured. A half-configured channel raises
    here, at start-up, rather than silently dropping alerts later."""
    channels: list[Channel] = [LocalChannel(store)]
    if settings.get("webhook_url"):
        channels.append(
            WebhookChannel(
                settings["webhook_url"],
                timeout_s=float(_setting(settings, "webhook_timeout_s", 5)),
                retries=int(_setting(settings, "webhook_retries", 3)),
            )
        )
    if settings.get("smtp_host"):
        if not settings.get("smtp_sender"):
            raise ValueError("smtp_host is set but smtp_sender is not")
        recipients = _recipients(settings.get("smtp_recipients"))
        if not recipients:
            raise ValueError("smtp_host is set but smtp_recipients is empty")
        channels.append(
            EmailChannel(
                settings["smtp_host"],
                int(_setting(settings, "smtp_port", 25)),
                settings["smtp_sender"],
                recipients,
                username=settings.get("smtp_username") or None,
                password=settings.get("smtp_password") or None,
                starttls=_flag(settings.get("smtp_starttls", False)),
            )
        )
    return Notifier(channels)
