"""The local runtime's stack: made from `stack_definitions`, and alive — state machines run Lambda
tasks in the runtime's process, queues feed handlers, S3 uploads reach the dataset handler through
EventBridge and SQS, due schedules fire, and sent emails land in the outbox."""

from __future__ import annotations

import io
import json
import re
import time
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LocalApi, wait_for
from tests.e2e.probe import PREFIX
from tunelab.adapters.dynamodb import DynamoDatasets, RecordsTable
from tunelab.composition.stack_definitions import (
    AUTO_UNDEPLOY_FUNCTION,
    EVENT_RULES,
    FUNCTIONS,
    QUEUES,
    SCHEDULES,
    STATE_MACHINES,
    render_pattern,
)
from tunelab.composition.state_machines import definition_text
from tunelab.domain.records import Creator, DatasetRecord, new_dataset_id

pytestmark = pytest.mark.xdist_group("e2e")

STACK = "tunelab"
ACCOUNT = "123456789012"
REGION = "us-east-1"
SCHEDULER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/{STACK}-scheduler"
SAMPLE_CSV = Path(__file__).resolve().parents[2] / "shared" / "tunelab" / "sample_data" / "support-triage.csv"


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "runs in the runtime's process\n")
    return buffer.getvalue()


def make_probe(local: LocalApi) -> str:
    """A function running `tests.e2e.probe.handler` in the runtime; its ARN."""
    role = local.client("iam").get_role(RoleName=f"{STACK}-lambda")["Role"]["Arn"]
    created = local.client("lambda").create_function(
        FunctionName=f"probe-{uuid.uuid4().hex[:8]}",
        Runtime="python3.12",
        Role=role,
        Handler="tests.e2e.probe.handler",
        Code={"ZipFile": _zip()},
        Timeout=30,
    )
    return str(created["FunctionArn"])


def probe_records(local: LocalApi, function_arn: str) -> list[Any]:
    """The events the probe function received (as it recorded them)."""
    s3 = local.client("s3")
    name = function_arn.rsplit(":", 1)[1]
    listed = s3.list_objects_v2(Bucket=f"{STACK}-artifacts", Prefix=f"{PREFIX}{name}/")
    return [
        json.loads(s3.get_object(Bucket=f"{STACK}-artifacts", Key=item["Key"])["Body"].read())
        for item in listed.get("Contents", [])
    ]


# --- the stack as defined -------------------------------------------------------------------------


def test_functions_are_the_defined_ones_with_their_handlers(local: LocalApi) -> None:
    lam = local.client("lambda")
    for spec in FUNCTIONS:
        configuration = lam.get_function(FunctionName=f"{STACK}-{spec.name_suffix}")["Configuration"]
        assert configuration["Handler"] == f"functions.{spec.module}.handler"
        assert configuration["Timeout"] == spec.timeout_seconds
        assert configuration["MemorySize"] == spec.memory_mb


def test_state_machines_are_the_asl_files_with_the_stacks_arns(local: LocalApi) -> None:
    sfn = local.client("stepfunctions")
    for spec in STATE_MACHINES:
        arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{STACK}-{spec.name_suffix}"
        described = sfn.describe_state_machine(stateMachineArn=arn)
        text = described["definition"]
        assert "${" not in text, f"{spec.asl_file} has an unfilled placeholder"
        # Every Lambda task the file names by placeholder now names the stack's function.
        for placeholder in re.findall(r"\$\{([A-Za-z]+)FunctionArn\}", definition_text(spec.asl_file)):
            function = next(f for f in FUNCTIONS if f.logical_id == placeholder)
            assert f":function:{STACK}-{function.name_suffix}" in text


def test_rules_route_their_patterns_to_the_defined_queues(local: LocalApi) -> None:
    events = local.client("events")
    for spec in EVENT_RULES:
        bus = f"{STACK}-events" if spec.bus == "tunelab" else "default"
        rule = events.describe_rule(Name=f"{STACK}-{spec.logical_id}", EventBusName=bus)
        expected = render_pattern(spec.event_pattern, {"DatasetsBucketName": f"{STACK}-datasets"})
        assert json.loads(rule["EventPattern"]) == expected
        targets = events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus)["Targets"]
        queue = next(q for q in QUEUES if q.logical_id == spec.target_queue)
        assert [t["Arn"] for t in targets] == [f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue.name}"]
        assert targets[0]["DeadLetterConfig"]["Arn"].endswith(f":{STACK}-event-delivery-dlq")


def test_queues_have_dead_letter_queues_and_feed_their_consumers(local: LocalApi) -> None:
    sqs, lam = local.client("sqs"), local.client("lambda")
    for spec in QUEUES:
        url = sqs.get_queue_url(QueueName=spec.name)["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attributes["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"].endswith(f":{spec.dlq_name}")
        assert int(redrive["maxReceiveCount"]) == spec.max_receive_count
        listed = lam.list_event_source_mappings(EventSourceArn=attributes["QueueArn"])
        mappings = listed["EventSourceMappings"]
        consumer = next(f for f in FUNCTIONS if f.logical_id == spec.consumer)
        assert [m["FunctionArn"].rsplit(":", 1)[1] for m in mappings] == [f"{STACK}-{consumer.name_suffix}"]
        assert mappings[0]["BatchSize"] == spec.batch_size


def test_schedules_and_the_schedule_group_exist(local: LocalApi) -> None:
    scheduler = local.client("scheduler")
    assert scheduler.get_schedule_group(Name=f"{STACK}-auto-undeploy")["State"] == "ACTIVE"
    for spec in SCHEDULES:
        schedule = scheduler.get_schedule(Name=f"{STACK}-{spec.logical_id}")
        assert schedule["ScheduleExpression"] == spec.expression
        target = next(f for f in FUNCTIONS if f.logical_id == spec.target_function)
        assert schedule["Target"]["Arn"].endswith(f":function:{STACK}-{target.name_suffix}")


# --- the seam: Lambda runs in the runtime's process ---------------------------------------------


def test_a_state_machine_task_runs_the_handler(local: LocalApi) -> None:
    probe = make_probe(local)
    sfn = local.client("stepfunctions")
    role = local.client("iam").get_role(RoleName=f"{STACK}-states")["Role"]["Arn"]
    machine = sfn.create_state_machine(
        name=f"probe-{uuid.uuid4().hex[:8]}",
        roleArn=role,
        definition=json.dumps(
            {
                "StartAt": "Probe",
                "States": {
                    "Probe": {
                        "Type": "Task",
                        "Resource": "arn:aws:states:::lambda:invoke",
                        "Parameters": {"FunctionName": probe, "Payload.$": "$"},
                        "OutputPath": "$.Payload",
                        "TimeoutSeconds": 60,
                        "End": True,
                    }
                },
            }
        ),
    )

    execution = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], input='{"hello": "task"}')
    ended = wait_for(
        lambda: (
            (d := sfn.describe_execution(executionArn=execution["executionArn"]))["status"] != "RUNNING" and d
        ),
        what="the execution to end",
    )

    assert ended["status"] == "SUCCEEDED", ended
    output = json.loads(ended["output"])
    assert output["echo"] == {"hello": "task"}
    assert probe_records(local, probe) == [{"hello": "task"}]


def test_an_sqs_message_runs_the_handler(local: LocalApi) -> None:
    probe = make_probe(local)
    sqs = local.client("sqs")
    url = sqs.create_queue(QueueName=f"probe-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    local.client("lambda").create_event_source_mapping(EventSourceArn=arn, FunctionName=probe, BatchSize=1)

    sqs.send_message(QueueUrl=url, MessageBody='{"hello": "queue"}')

    records = wait_for(lambda: probe_records(local, probe), what="the probe to receive the message")
    assert [json.loads(r["body"]) for r in records[0]["Records"]] == [{"hello": "queue"}]


def test_an_upload_reaches_the_dataset_handler_through_eventbridge_and_sqs(local: LocalApi) -> None:
    """S3 "Object Created" → the DatasetUploaded rule → the uploads queue → functions.dataset_uploaded."""
    repo = DynamoDatasets(RecordsTable(f"{STACK}-records", local.client("dynamodb")))
    now = datetime.now(UTC)
    dataset = repo.create(
        DatasetRecord(
            workspace_id="ws-upload",
            dataset_id=new_dataset_id(),
            name="support-tickets",
            status="uploading",
            created_at=now,
            updated_at=now,
            created_by=Creator(email="ada@example.com"),
        )
    )
    key = f"uploads/ws-upload/{dataset.dataset_id}.csv"
    url = local.client("s3").generate_presigned_url(
        "put_object", Params={"Bucket": f"{STACK}-datasets", "Key": key}, ExpiresIn=300
    )

    assert httpx.put(url, content=SAMPLE_CSV.read_bytes(), timeout=120).status_code == 200

    def settled() -> DatasetRecord | None:
        found = repo.find("ws-upload", dataset.dataset_id)
        return found if found is not None and found.status in {"ready", "invalid"} else None

    ready = wait_for(settled, timeout=120, what="the dataset to be validated")
    assert ready.status == "ready", ready.errors
    assert ready.rows == 200


# --- schedules and emails -----------------------------------------------------------------------


def _at(moment: datetime) -> str:
    return f"at({moment.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S')})"


def test_a_due_schedule_invokes_its_target_with_its_input_and_is_deleted(local: LocalApi) -> None:
    probe = make_probe(local)
    scheduler = local.client("scheduler")
    name = f"probe-{uuid.uuid4().hex[:8]}"
    scheduler.create_schedule(
        Name=name,
        GroupName=f"{STACK}-auto-undeploy",
        ScheduleExpression=_at(datetime.now(UTC) - timedelta(seconds=5)),
        ScheduleExpressionTimezone="UTC",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": probe, "RoleArn": SCHEDULER_ROLE, "Input": '{"n": 1}'},
        ActionAfterCompletion="DELETE",
    )

    assert wait_for(lambda: probe_records(local, probe), what="the schedule to fire") == [{"n": 1}]

    def deleted() -> bool:
        names = [s["Name"] for s in scheduler.list_schedules(GroupName=f"{STACK}-auto-undeploy")["Schedules"]]
        return name not in names

    wait_for(deleted, what="the fired schedule to be deleted")


def test_a_future_schedule_does_not_fire(local: LocalApi) -> None:
    probe = make_probe(local)
    scheduler = local.client("scheduler")
    name = f"later-{uuid.uuid4().hex[:8]}"
    scheduler.create_schedule(
        Name=name,
        GroupName=f"{STACK}-auto-undeploy",
        ScheduleExpression=_at(datetime.now(UTC) + timedelta(hours=1)),
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": probe, "RoleArn": SCHEDULER_ROLE, "Input": "{}"},
        ActionAfterCompletion="DELETE",
    )
    # The runner polls every second: three polls pass without firing it.
    time.sleep(3.5)
    assert probe_records(local, probe) == []
    assert scheduler.get_schedule(Name=name, GroupName=f"{STACK}-auto-undeploy")["Name"] == name


def test_a_due_auto_undeploy_schedule_runs_the_auto_undeploy_function(local: LocalApi) -> None:
    """The AutoUndeploy function itself, with a schedule input for a model that does not exist:
    it runs and answers that it ignored the schedule (nothing to undeploy)."""
    scheduler = local.client("scheduler")
    name = f"gone-model-{uuid.uuid4().hex[:8]}-undeploy"
    past = datetime.now(UTC) - timedelta(minutes=1)
    payload = {
        "action": "undeploy",
        "workspace_id": "ws-schedules",
        "model_name": "no-such-model",
        "uid": "uid-0",
        "deployment_requested_at": (past - timedelta(hours=1)).isoformat(),
        "undeploy_at": past.isoformat(),
    }
    target = next(f for f in FUNCTIONS if f.logical_id == AUTO_UNDEPLOY_FUNCTION)
    scheduler.create_schedule(
        Name=name,
        GroupName=f"{STACK}-auto-undeploy",
        ScheduleExpression=_at(past),
        ScheduleExpressionTimezone="UTC",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}-{target.name_suffix}",
            "RoleArn": SCHEDULER_ROLE,
            "Input": json.dumps(payload),
        },
        ActionAfterCompletion="DELETE",
    )

    line = wait_for(
        lambda: next((ln for ln in local.log().splitlines() if f"/{name} fired" in ln), None),
        what="the auto-undeploy schedule to fire",
    )
    assert f"{STACK}-auto-undeploy answered" in line
    assert '"action": "ignored"' in line


def _sent_file(local: LocalApi, to: str, subject_part: str) -> Path:
    def find() -> Path | None:
        if not local.outbox.is_dir():
            return None
        return next((p for p in local.outbox.glob("*.eml") if to in p.name and subject_part in p.name), None)

    found: Path = wait_for(find, what=f"an email to {to} in the outbox")
    return found


def test_an_email_sent_through_sesv2_lands_in_the_outbox_with_both_parts(local: LocalApi) -> None:
    to = f"bo-{uuid.uuid4().hex[:6]}@example.com"
    local.client("sesv2").send_email(
        FromEmailAddress="tunelab@tunelab.local",
        Destination={"ToAddresses": [to]},
        Content={
            "Simple": {
                "Subject": {"Data": "support-bot is ready: training completed"},
                "Body": {
                    "Text": {"Data": "Training finished.\nDeploy it: tunelab models deploy support-bot"},
                    "Html": {"Data": "<html><body><p>Training finished.</p></body></html>"},
                },
            }
        },
    )

    path = _sent_file(local, to, "support-bot-is-ready")
    assert re.fullmatch(r"\d{8}T\d{6}\d{6}Z-" + re.escape(to) + r"-support-bot-is-ready.*\.eml", path.name)
    raw = path.read_bytes()
    assert b"\r\n" in raw  # RFC 5322 line ends
    message = message_from_bytes(raw, _class=EmailMessage, policy=default_policy)
    assert message["To"] == to
    assert message["From"] == "tunelab@tunelab.local"
    assert message["Subject"] == "support-bot is ready: training completed"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    assert "Deploy it: tunelab models deploy support-bot" in text.get_content()
    assert "<p>Training finished.</p>" in html.get_content()
    wait_for(
        lambda: f"email to {to}: support-bot is ready: training completed" in local.log(),
        what="the email's log line",
    )
    # Written once: the outbox does not write it again on its next polls.
    assert len([p for p in local.outbox.glob("*.eml") if to in p.name]) == 1


def test_an_html_only_email_gets_a_text_part(local: LocalApi) -> None:
    to = f"cy-{uuid.uuid4().hex[:6]}@example.com"
    local.client("ses").send_email(
        Source="tunelab@tunelab.local",
        Destination={"ToAddresses": [to]},
        Message={
            "Subject": {"Data": "Deployment failed"},
            "Body": {"Html": {"Data": "<p>The endpoint <b>failed</b>.</p><p>Try again.</p>"}},
        },
    )

    path = _sent_file(local, to, "Deployment-failed")
    message = message_from_bytes(path.read_bytes(), _class=EmailMessage, policy=default_policy)
    text = message.get_body(("plain",))
    assert text is not None
    assert text.get_content().split() == ["The", "endpoint", "failed.", "Try", "again."]


def test_the_recurring_reconciler_runs_in_the_runtime(local: LocalApi) -> None:
    """What the reconciler's rate schedule invokes every 15 minutes works here (no function error)."""
    spec = next(s for s in SCHEDULES if s.logical_id == "ReconcilerSchedule")
    target = next(f for f in FUNCTIONS if f.logical_id == spec.target_function)

    answer = local.client("lambda").invoke(FunctionName=f"{STACK}-{target.name_suffix}", Payload=b"{}")

    body = json.loads(answer["Payload"].read())
    assert "FunctionError" not in answer, body
    assert isinstance(body, dict)


def test_secrets_manager_and_sts_answer_on_the_endpoint(local: LocalApi) -> None:
    assert local.client("sts").get_caller_identity()["Account"] == ACCOUNT
    secrets = local.client("secretsmanager")
    name = f"hf-token-{uuid.uuid4().hex[:6]}"
    secrets.create_secret(Name=name, SecretString="hf_example")
    assert secrets.get_secret_value(SecretId=name)["SecretString"] == "hf_example"
