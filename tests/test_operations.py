"""What an operator reads: log lines per event, /metrics, /health/, and retention (prune)."""

from __future__ import annotations

import io
import json
import logging
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from pythonjsonlogger.json import JsonFormatter

from gateways.models import ConnectionTest
from mailkit.logs import KeyValueFormatter, event
from operations.models import Heartbeat
from operations.tasks import heartbeat
from outbound import credentials, delivery
from outbound.intake import accept_message
from outbox.models import DeliveryAttempt, Message
from policy.propagation import propagate
from policy.service import set_domain_policy

from .conftest import PASSWORD, server_for, wait_for
from .test_faults import alias_gateway, attempt, fault_peer, gateway_is  # noqa: F401 - fixtures

BODY = "The secret plans are in the attachment"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def gateway(people, smtp_peer, trust_test_ca):
    peer = smtp_peer("relay@example.com", "relay-secret")
    people.domain.outbound_gateway = server_for(peer)
    people.domain.save()
    return peer


def send(people, body: str = BODY) -> Message:
    message = accept_message(people.user, people.user.email, ["bob@elsewhere.test"], "Hi", body)
    delivery.deliver(message.pk)
    message.refresh_from_db()
    return message


def events(caplog, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == name]


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


# --- logs ----------------------------------------------------------------------------------------


def test_every_delivery_attempt_is_one_log_line_with_route_server_and_code_but_no_body(
    people, gateway, caplog
):
    caplog.set_level(logging.INFO, logger="sendgate")
    message = send(people)

    [line] = events(caplog, "delivery.attempt")
    assert line.message == "delivery.attempt"
    assert (line.route, line.outcome, line.code) == ("domain_gateway", "sent", "250")
    assert line.server == f"localhost:{gateway.port}" and line.message_pk == message.pk
    assert line.seconds > 0
    formatted = KeyValueFormatter("%(message)s").format(line)
    assert "route=domain_gateway" in formatted and "outcome=sent" in formatted
    assert BODY not in caplog.text and "relay-secret" not in formatted


def test_json_format_writes_one_object_per_line_with_the_fields_as_keys():
    record = logging.LogRecord("sendgate.delivery", logging.INFO, __file__, 1, "x", None, None)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("%(levelname)s %(name)s %(message)s"))
    log = logging.getLogger("sendgate.test-json")
    log.addHandler(handler)
    log.propagate = False
    try:
        event(log, "delivery.attempt", route="direct_mx", code="451", seconds=1.5)
    finally:
        log.removeHandler(handler)
    [line] = stream.getvalue().splitlines()
    parsed = json.loads(line)
    assert parsed["message"] == parsed["event"] == "delivery.attempt"
    assert (parsed["route"], parsed["code"], parsed["seconds"]) == ("direct_mx", "451", 1.5)
    assert record  # the standard attributes are not repeated as fields:
    assert "args" not in parsed and "msecs" not in parsed


def test_an_unknown_log_format_stops_the_start_with_a_clear_message(monkeypatch):
    import importlib

    import config.settings

    monkeypatch.setenv("SENDGATE_LOG_FORMAT", "xml")
    with pytest.raises(Exception, match="SENDGATE_LOG_FORMAT must be plain or json"):
        importlib.reload(config.settings)
    monkeypatch.delenv("SENDGATE_LOG_FORMAT")
    importlib.reload(config.settings)


def test_propagation_logs_its_start_and_finish(people, caplog):
    caplog.set_level(logging.INFO, logger="sendgate")
    change = set_domain_policy(people.domain, True, people.admin)
    propagate(change.pk)
    [started] = events(caplog, "policy.propagation_started")
    [finished] = events(caplog, "policy.propagation_finished")
    assert started.change == finished.change == change.pk and started.value == "allow"
    assert finished.accounts_applied == change.accounts_total > 0


def test_a_failed_submission_login_is_logged_and_counted(client, db, caplog):
    caplog.set_level(logging.INFO, logger="sendgate")
    before = scrape(client).get(("sendgate_submission_auth_failures_total", ()), 0)
    credentials.record_failure("192.0.2.7", "ann@example.com")
    [line] = events(caplog, "submission.auth_failed")
    assert (line.login, line.ip, line.recent_failures_from_ip) == (
        "ann@example.com",
        "192.0.2.7",
        1,
    )
    assert scrape(client)[("sendgate_submission_auth_failures_total", ())] == before + 1


# --- metrics -------------------------------------------------------------------------------------


def test_metrics_count_deliveries_by_route_and_outcome_and_show_the_queue(people, gateway, client):
    sent = ("sendgate_delivery_attempts_total", (("outcome", "sent"), ("route", "domain_gateway")))
    before = scrape(client).get(sent, 0)
    send(people)
    accept_message(people.user, people.user.email, ["carol@elsewhere.test"], "Later", "B")

    samples = scrape(client)
    assert samples[sent] == before + 1
    assert samples[("sendgate_queue_messages", (("state", "queued"),))] == 1
    assert samples[("sendgate_queue_messages", (("state", "deferred"),))] == 0
    assert samples[("sendgate_queue_oldest_due_seconds", ())] >= 0
    histogram = ("sendgate_delivery_attempt_seconds_count", (("route", "domain_gateway"),))
    assert samples[histogram] >= 1
    assert samples[("sendgate_paused_gateways", ())] == 0
    assert ("sendgate_policy_propagation_accounts_pending", ()) in samples


def test_metrics_answer_remote_clients_only_with_the_token(client, db, settings):
    settings.SENDGATE_METRICS_TOKEN = "op-token-123"
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 404
    # Through a reverse proxy on the same host: loopback, but forwarded.
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 404
    assert client.get("/health/", REMOTE_ADDR="203.0.113.9").status_code == 404
    wrong = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 404
    ok = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer op-token-123")
    assert ok.status_code == 200 and b"sendgate_queue_messages" in ok.content


# --- health --------------------------------------------------------------------------------------
# The checks run in threads with their own database connections: the tests commit their rows.


def health(client) -> tuple[int, dict[str, str]]:
    """The report by check name ("Ping", not "Ping(app=<Celery ...>)")."""
    response = client.get("/health/?format=json")
    return response.status_code, {k.split("(")[0]: v for k, v in response.json().items()}


def test_health_names_what_is_down_when_no_worker_or_beat_runs(client, transactional_db):
    status, report = health(client)
    assert status == 500
    assert (report["Database"], report["Broker"]) == ("OK", "OK")
    assert report["Beat"] == "Unavailable: Beat has not run yet."
    assert report["Ping"].startswith("Unavailable")


def test_health_reports_a_stale_beat_with_its_age(client, transactional_db, settings):
    settings.SENDGATE_BEAT_STALE_SECONDS = 60
    Heartbeat.objects.create(name="beat", at=timezone.now() - timedelta(seconds=600))
    _status, report = health(client)
    assert report["Beat"].startswith("Unavailable: Beat last ran 60")


@pytest.mark.worker
def test_health_is_ok_when_a_worker_runs_beats_heartbeat(client, celery_worker):
    heartbeat.delay()  # what beat sends every 30 s
    wait_for(lambda: Heartbeat.objects.filter(name="beat").exists(), what="the heartbeat")
    status, report = health(client)
    assert report == {"Database": "OK", "Broker": "OK", "Ping": "OK", "Beat": "OK"}
    assert status == 200


# --- retention -----------------------------------------------------------------------------------


def test_prune_removes_old_bodies_of_finished_mail_and_keeps_everything_else(
    people, gateway, client
):
    old_sent = send(people)
    recent_sent = send(people)
    old_queued = accept_message(people.user, people.user.email, ["x@elsewhere.test"], "Q", BODY)
    long_ago = timezone.now() - timedelta(days=400)
    Message.objects.filter(pk__in=[old_sent.pk, old_queued.pk]).update(created_at=long_ago)
    DeliveryAttempt.objects.filter(message=old_sent).update(started_at=long_ago)
    ConnectionTest.objects.create(account=people.user, host="old.example", ok=True)
    ConnectionTest.objects.update(created_at=long_ago)

    out = io.StringIO()
    call_command("prune", stdout=out)
    assert "Removed 1 message bodies, 1 delivery attempts and 1 connection tests." in out.getvalue()

    old_sent.refresh_from_db()
    assert bytes(old_sent.raw) == b"" and old_sent.body_pruned_at is not None
    assert old_sent.subject == "Hi" and old_sent.state == Message.State.SENT  # metadata stays
    assert BODY.encode() in bytes(Message.objects.get(pk=recent_sent.pk).raw)
    assert BODY.encode() in bytes(Message.objects.get(pk=old_queued.pk).raw)  # still to deliver
    assert DeliveryAttempt.objects.filter(message=recent_sent).count() == 1

    client.login(username=people.user.email, password=PASSWORD)
    page = client.get(f"/sent/{old_sent.pk}/").content.decode()
    assert "by the retention policy" in page


def test_prune_refuses_negative_days_and_zero_keeps_everything(people, gateway):
    with pytest.raises(CommandError, match="--body-days must be 0"):
        call_command("prune", "--body-days", "-1")
    message = send(people)
    Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(days=999))
    call_command("prune", "--body-days", "0", "--record-days", "0", stdout=io.StringIO())
    assert bytes(Message.objects.get(pk=message.pk).raw) != b""


def test_the_container_health_command_fails_while_beat_has_not_run(transactional_db):
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("health_check", "health", "--no-http", stdout=out)
    assert exited.value.code == 1
    assert "Beat has not run yet" in out.getvalue()


def test_the_sample_dashboard_only_charts_metrics_that_exist(db):
    import prometheus_client

    import outbound.metrics  # noqa: F401 - registers the delivery and submission metrics
    from operations.metrics import DatabaseCollector

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    families = [*prometheus_client.REGISTRY.collect(), *DatabaseCollector().collect()]
    exposed = {f.name + suffix for f in families for suffix in suffixes.get(f.type, [""])}
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    used = {
        metric
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for metric in re.findall(r"\bsendgate_[a-z_]+", target["expr"])
    }
    assert len(used) >= 9
    assert used - exposed == set()


def test_a_users_gateway_refusing_its_password_is_logged_as_paused(people, request, caplog):
    caplog.set_level(logging.INFO, logger="sendgate")
    start_alias_gateway = request.getfixturevalue("alias_gateway")  # from test_faults
    _peer, server = start_alias_gateway("535 5.7.8 authentication failed")
    attempt(accept_message(people.user, "ann@partner.org", ["bob@elsewhere.test"], "Hi", "B"))
    [paused] = events(caplog, "gateway.paused")
    assert (paused.server, paused.by, paused.levelname) == (server.pk, "delivery", "WARNING")
    [line] = events(caplog, "delivery.attempt")
    assert (line.route, line.outcome, line.code) == ("user_gateway", "deferred", "535")


def test_the_retention_run_is_logged_with_its_counts(db, caplog):
    caplog.set_level(logging.INFO, logger="sendgate")
    call_command("prune", stdout=io.StringIO())
    [line] = events(caplog, "retention.pruned")
    assert (line.bodies, line.attempts, line.connection_tests) == (0, 0, 0)
    assert line.body_days == 30 and line.record_days == 180


def test_known_library_noise_is_dropped_and_everything_else_is_kept():
    [console] = [h for h in logging.getLogger().handlers if h.filters]
    record = logging.makeLogRecord
    noise = record({"name": "kombu.connection", "msg": "No hostname was supplied. Reverting"})
    deprecation = record({"name": "mail.log", "msg": "Session.login_data is deprecated"})
    useful = record({"name": "kombu.connection", "msg": "Cannot connect to redis://x: refused"})
    assert not console.filter(noise) and not console.filter(deprecation)
    assert console.filter(useful)
    assert logging.getLogger("celery.app.trace").getEffectiveLevel() == logging.WARNING
