"""Alert delivery (emonet_assets.lib.shared.notify) against real local HTTP and SMTP servers on 127.0.0.1."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import time
from datetime import UTC, datetime

import pytest

from emonet_assets.lib.shared.notify import (
    Alert,
    Delivery,
    EmailChannel,
    LocalChannel,
    Notifier,
    WebhookChannel,
    notifier_from_settings,
    slack_payload,
)
from emonet_assets.lib.shared.storage import Store
from emonet_assets_tests.local_servers import free_port

RUN_URL = "http://dagster.local:3000/runs/6f1c2d3e-aaaa-bbbb-cccc-0123456789ab"


def _alert(**overrides) -> Alert:
    fields = {
        "kind": "check_failure",
        "title": "Thin test cells in the split",
        "severity": "ERROR",
        "asset": "dataset_splits",
        "check": "test_cells_filled",
        "run_id": "6f1c2d3e-aaaa-bbbb-cccc-0123456789ab",
        "run_url": RUN_URL,
        "message": "3 cells below 5 test images",
        "metadata": {"thin_cells": 3, "min_test_per_cell": 5, "worst_cell": "anger/elderly", "ratio": float("nan")},
        "created_at": datetime(2026, 3, 1, 12, 30, tzinfo=UTC),
    }
    return Alert(**(fields | overrides))


pytestmark = pytest.mark.usefixtures("no_proxy")


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _texts(blocks: list[dict]) -> str:
    """Every piece of text in the blocks, to search for a value wherever Slack shows it."""
    out = []
    for block in blocks:
        if "text" in block:
            out.append(block["text"]["text"])
        out += [item["text"] for item in block.get("fields", [])]
    return "\n".join(out)


def test_webhook_payload_carries_the_alert(webhook_server):
    delivery = WebhookChannel(webhook_server.url, timeout_s=2, retries=0, headers={"X-Token": "t0k"}).send(_alert())

    assert delivery == Delivery(channel="webhook", ok=True, attempts=1, error=None)
    assert len(webhook_server.bodies) == 1
    payload = json.loads(webhook_server.bodies[0], parse_constant=_reject_constant)
    assert webhook_server.headers_seen[0]["Content-Type"] == "application/json"
    assert webhook_server.headers_seen[0]["X-Token"] == "t0k"

    assert "Thin test cells" in payload["text"] and "ERROR" in payload["text"]
    assert [block["type"] for block in payload["blocks"]][:2] == ["header", "section"]
    assert payload["blocks"][0]["text"]["text"] == "Thin test cells in the split"
    shown = _texts(payload["blocks"])
    for value in ("dataset_splits", "test_cells_filled", "ERROR", RUN_URL, "3 cells below 5 test images"):
        assert value in shown
    for key, value in (("thin_cells", "3"), ("min_test_per_cell", "5"), ("worst_cell", "anger/elderly")):
        assert key in shown and value in shown
    assert payload["alert"]["asset"] == "dataset_splits"
    assert payload["alert"]["metadata"]["ratio"] == "nan"
    assert payload["alert"]["created_at"] == "2026-03-01T12:30:00+00:00"


def test_webhook_retries_5xx_with_exponential_backoff(webhook_server):
    webhook_server.statuses.extend([500, 503])
    backoff = 0.1

    started = time.monotonic()
    delivery = WebhookChannel(webhook_server.url, timeout_s=2, retries=3, backoff_s=backoff).send(_alert())
    elapsed = time.monotonic() - started

    assert delivery.ok and delivery.attempts == 3 and delivery.error is None
    assert len(webhook_server.bodies) == 3
    assert elapsed >= backoff * (1 + 2)


def test_webhook_timeout_is_retried_then_given_up_without_raising(webhook_server):
    webhook_server.hang = True

    delivery = WebhookChannel(webhook_server.url, timeout_s=0.2, retries=2, backoff_s=0.01).send(_alert())

    assert not delivery.ok
    assert delivery.attempts == 3
    assert "timed out" in delivery.error
    assert len(webhook_server.bodies) == 3


def test_webhook_4xx_is_not_retried(webhook_server):
    webhook_server.statuses.extend([400])

    delivery = WebhookChannel(webhook_server.url, timeout_s=2, retries=3, backoff_s=0.01).send(_alert())

    assert not delivery.ok and delivery.attempts == 1
    assert "400" in delivery.error
    assert len(webhook_server.bodies) == 1


def test_webhook_connection_refused_is_retried():
    url = f"http://127.0.0.1:{free_port()}/hook"

    delivery = WebhookChannel(url, timeout_s=1, retries=2, backoff_s=0.01).send(_alert())

    assert not delivery.ok and delivery.attempts == 3
    assert delivery.error


def test_webhook_rejects_non_http_urls():
    with pytest.raises(ValueError, match="http"):
        WebhookChannel("file:///etc/passwd")


def test_slack_payload_stays_within_block_limits():
    metadata = {f"key_{i:02d}": i for i in range(14)}
    payload = slack_payload(_alert(title="x" * 400, metadata=metadata, asset=None, check=None, kind="run_failure"))

    header, summary, message, meta, rest = payload["blocks"]
    assert len(header["text"]["text"]) == 150
    assert "—" in summary["fields"][0]["text"]
    assert len(meta["fields"]) == 10
    assert "key_13" in rest["text"]["text"] and "key_09" not in rest["text"]["text"]
    assert message["text"]["text"] == "3 cells below 5 test images"


def test_slack_payload_escapes_markup():
    payload = slack_payload(_alert(message="a < b & c > d", run_url="http://x/runs/1?a=1|2"))

    shown = _texts(payload["blocks"])
    assert "a &lt; b &amp; c &gt; d" in shown
    assert "<http://x/runs/1?a=1%7C2|" in shown


def test_alert_rejects_unknown_severity_and_naive_time():
    with pytest.raises(ValueError, match="severity"):
        _alert(severity="INFO")
    with pytest.raises(ValueError, match="kind"):
        _alert(kind="asset_failure")
    with pytest.raises(ValueError, match="timezone"):
        _alert(created_at=datetime(2026, 3, 1))


def _email_channel(port: int, **overrides) -> EmailChannel:
    options = {
        "host": "127.0.0.1",
        "port": port,
        "sender": "alerts@emonet.test",
        "recipients": ["ops@emonet.test", "ml@emonet.test"],
        "timeout_s": 2,
        "retries": 2,
        "backoff_s": 0.01,
    } | overrides
    return EmailChannel(**options)


def test_email_is_delivered_with_subject_recipients_and_run_link(smtp_server):
    delivery = _email_channel(smtp_server.port).send(_alert(severity="WARN"))

    assert delivery == Delivery(channel="email", ok=True, attempts=1, error=None)
    [(sender, recipients, data)] = smtp_server.messages
    assert sender == "alerts@emonet.test"
    assert recipients == ["ops@emonet.test", "ml@emonet.test"]
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert message["Subject"] == "[emonet-face] WARN: Thin test cells in the split"
    assert message["To"] == "ops@emonet.test, ml@emonet.test"
    body = message.get_content()
    assert RUN_URL in body
    for value in ("dataset_splits", "test_cells_filled", "check_failure", "worst_cell: anger/elderly"):
        assert value in body
    assert smtp_server.logins == []


def test_email_logs_in_when_credentials_are_given(smtp_server):
    delivery = _email_channel(smtp_server.port, username="bot", password="s3cret").send(_alert())

    assert delivery.ok
    assert smtp_server.logins == [b"\0bot\0s3cret"]


def test_email_transient_reply_is_retried_permanent_is_not(smtp_server):
    smtp_server.mail_replies.extend(["451 try again later"])
    assert _email_channel(smtp_server.port).send(_alert()).attempts == 2
    assert len(smtp_server.messages) == 1

    smtp_server.rcpt_reply = "550 no such user"
    delivery = _email_channel(smtp_server.port).send(_alert())
    assert not delivery.ok and delivery.attempts == 1
    assert "550" in delivery.error


def test_email_to_unreachable_server_fails_without_raising():
    delivery = _email_channel(free_port(), retries=1).send(_alert())

    assert not delivery.ok and delivery.attempts == 2
    assert delivery.error


# local channel


def test_local_channel_appends_rows_and_logs_at_the_severity(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="emonet_assets.lib.shared.notify")
    store = Store(str(tmp_path / "root"))
    channel = LocalChannel(store)

    first = channel.send(_alert(severity="ERROR"))
    second = channel.send(_alert(severity="WARN", check=None, kind="run_failure", metadata={}))

    assert first.ok and second.ok and first.channel == "local"
    table = store.read_table("alerts")
    assert table["severity"].to_list() == ["ERROR", "WARN"]
    assert table["check"].to_list() == ["test_cells_filled", None]
    assert table["run_url"].to_list() == [RUN_URL, RUN_URL]
    assert json.loads(table["metadata"][0]) == {
        "min_test_per_cell": 5,
        "ratio": "nan",
        "thin_cells": 3,
        "worst_cell": "anger/elderly",
    }
    assert table["created_at"][0] == datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    assert [record.levelno for record in caplog.records] == [logging.ERROR, logging.WARNING]
    assert "Thin test cells" in caplog.records[0].getMessage()


def test_local_channel_reports_an_unwritable_store_but_still_logs(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="emonet_assets.lib.shared.notify")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")

    delivery = LocalChannel(Store(str(blocker))).send(_alert())

    assert not delivery.ok and delivery.error
    assert [record.levelno for record in caplog.records] == [logging.ERROR]


# notifier


class _Exploding:
    name = "exploding"

    def send(self, alert: Alert) -> Delivery:
        raise RuntimeError("boom")


def test_a_failing_channel_does_not_stop_the_others(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="emonet_assets.lib.shared.notify")
    store = Store(str(tmp_path))
    unreachable = WebhookChannel(f"http://127.0.0.1:{free_port()}/", timeout_s=1, retries=0)
    notifier = Notifier([_Exploding(), unreachable, LocalChannel(store)])

    deliveries = notifier.send(_alert())

    assert [(d.channel, d.ok) for d in deliveries] == [("exploding", False), ("webhook", False), ("local", True)]
    assert "boom" in deliveries[0].error
    assert store.read_table("alerts").height == 1
    warnings = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
    assert len(warnings) == 2 and "exploding" in warnings[0] and "webhook" in warnings[1]


def test_notifier_from_settings_builds_the_configured_channels(tmp_path):
    store = Store(str(tmp_path))
    assert [type(c) for c in notifier_from_settings({}, store).channels] == [LocalChannel]

    notifier = notifier_from_settings(
        {
            "webhook_url": "https://hooks.example.test/abc",
            "webhook_timeout_s": "2.5",
            "webhook_retries": 0,
            "smtp_host": "mail.example.test",
            "smtp_port": "587",
            "smtp_sender": "alerts@example.test",
            "smtp_recipients": "a@example.test, b@example.test",
            "smtp_username": "bot",
            "smtp_password": "pw",
            "smtp_starttls": "false",
        },
        store,
    )
    local, webhook, mail = notifier.channels
    assert isinstance(local, LocalChannel) and local.store is store
    assert (webhook.url, webhook.timeout_s, webhook.retries) == ("https://hooks.example.test/abc", 2.5, 0)
    assert (mail.host, mail.port, mail.recipients) == ("mail.example.test", 587, ["a@example.test", "b@example.test"])
    assert (mail.username, mail.password, mail.starttls) == ("bot", "pw", False)

    with pytest.raises(ValueError, match="smtp_recipients"):
        notifier_from_settings({"smtp_host": "mail", "smtp_sender": "a@b", "smtp_recipients": []}, store)
