"""DynamoDB: every record of tunelab in one table (`table`), one store per aggregate (workspaces,
provider connections, datasets, fine-tuned models with their history, task tokens, request counts)."""

from tunelab.adapters.dynamodb.budget import DynamoRequestBudget
from tunelab.adapters.dynamodb.connections import DynamoConnections
from tunelab.adapters.dynamodb.datasets import DynamoDatasets
from tunelab.adapters.dynamodb.models import DynamoModels
from tunelab.adapters.dynamodb.table import (
    ENDPOINT_INDEX,
    IDEMPOTENCY_TABLE_DEFINITION,
    IDEMPOTENCY_TTL_ATTRIBUTE,
    JOB_INDEX,
    TABLE_DEFINITION,
    TRANSIENT_INDEX,
    TTL_ATTRIBUTE,
    RecordsTable,
    model_key,
)
from tunelab.adapters.dynamodb.task_tokens import DynamoTaskTokens
from tunelab.adapters.dynamodb.workspaces import DynamoWorkspaces

__all__ = [
    "ENDPOINT_INDEX",
    "IDEMPOTENCY_TABLE_DEFINITION",
    "IDEMPOTENCY_TTL_ATTRIBUTE",
    "JOB_INDEX",
    "TABLE_DEFINITION",
    "TRANSIENT_INDEX",
    "TTL_ATTRIBUTE",
    "DynamoConnections",
    "DynamoDatasets",
    "DynamoModels",
    "DynamoRequestBudget",
    "DynamoTaskTokens",
    "DynamoWorkspaces",
    "RecordsTable",
    "model_key",
]
