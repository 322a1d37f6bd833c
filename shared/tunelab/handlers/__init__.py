"""The core of tunelab's event-driven functions: what each does with one event.

`functions/<name>.py` are thin Lambda entry points (Powertools batch processing, logging); the
rules live here and in `tunelab.operations`, which the API shares:

* `provider_events` — Bedrock and SageMaker state changes (EventBridge → SQS): training progress,
  the waiting fine-tuning workflow's task token, endpoints that fail or vanish after deployment.
* `dataset_uploads` — S3 "Object Created" under `uploads/`: streaming validation of a dataset.
* `reconcile` — the scheduled sweep that asks providers about jobs whose events were lost.
* `auto_undeploy` — the one-time schedules that undeploy a model (and remind before).
"""

from tunelab.handlers.common import BadMessageError, EventEnvelope, RetryLater, parse_envelope

__all__ = ["BadMessageError", "EventEnvelope", "RetryLater", "parse_envelope"]
