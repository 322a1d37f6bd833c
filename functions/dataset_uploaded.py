"""Lambda entry point: validates datasets uploaded to S3 ("Object Created" events via the uploads queue)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from tunelab.composition.wiring import get_services
from tunelab.entrypoints.messages import handle_upload, parse_envelope

logger = Logger(service="tunelab-dataset-uploaded")
tracer = Tracer(service="tunelab-dataset-uploaded")
# Failures are always listed, even when every record of a batch failed: only those are received again.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord) -> None:
    envelope = parse_envelope(record.body)
    logger.set_correlation_id(envelope.id)
    handle_upload(get_services(), envelope)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> Any:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
