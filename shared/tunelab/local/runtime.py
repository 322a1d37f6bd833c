"""The embedded local runtime: tunelab's whole backend on one machine, without an AWS account.

`LocalRuntime(data_dir, port).start()`:

1. listens on `port` (loopback) for the API first, so a port in use fails before anything starts;
2. starts moto in server mode on a free loopback port (DynamoDB, S3, SQS, EventBridge, Step
   Functions — told to execute state machines —, Lambda, SES, Scheduler, Secrets Manager, STS, IAM)
   behind a guard that answers only requests signed with this run's own credentials, made now and
   kept in the data dir (`tunelab.local.aws_guard`, `tunelab.local.aws_access`), and makes moto run
   Lambda functions in this process — tunelab's own handlers only (`tunelab.local.moto_lambda`);
3. sets the environment the handlers read (`tunelab.composition.settings.Settings`, with `RUNTIME=local`,
   `AWS_ENDPOINT_URL` pointing at moto and this run's credentials) and forgets cached settings and
   services;
4. creates the stack from `tunelab.composition.stack_definitions`, as the CDK app does: the records and
   idempotency tables, the buckets (the datasets bucket tells EventBridge about new objects), the
   event bus, one Lambda function per `FUNCTIONS` entry (`Handler=functions.<module>.handler`, a
   placeholder zip: the code runs here), the queues with their DLQs and event source mappings, the
   rules (and the local provider's `LOCAL_EVENT_RULES`), the state machines from the ASL files, the
   schedule group and the recurring schedules, and a verified SES sender;
5. installs the local provider (`tunelab.local.provider.install(context)`) when it is there;
6. starts the threads that fire due schedules (`scheduler`) and write sent emails (`outbox`), and
   the HTTP front.

What the endpoint acknowledges is kept on disk before it answers (`tunelab.local.persistence`: the
tables through their DynamoDB streams, the buckets' objects, the auto-undeploy schedules, the emails),
and restored as the stack is created at the next start — before the datasets bucket announces new
objects and before the handlers run. Then the local provider picks up its unfinished jobs (resumed from
their last checkpoint) and its deployments (loaded again), uploads not yet validated are announced
again, and the reconciler's recovery sweep settles or re-drives every model a lost workflow left in a
transient status (`_recover`).

`stop()` undoes all of it (running jobs are interrupted: the trainer saves a checkpoint for the next
start); moto's memory and this run's credentials are gone, the data dir keeps the rest. The data dir
is only its owner's (0700, `tunelab.local.files`). One runtime runs in a process at a time: moto's
state and the environment are the process's.
"""

from __future__ import annotations

import fcntl
import importlib
import io
import json
import logging
import os
import sys
import threading
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tunelab.adapters.dynamodb import (
    IDEMPOTENCY_TABLE_DEFINITION,
    IDEMPOTENCY_TTL_ATTRIBUTE,
    TABLE_DEFINITION,
    TTL_ATTRIBUTE,
)
from tunelab.composition.stack_definitions import (
    AUTO_UNDEPLOY_FUNCTION,
    EVENT_RULES,
    FUNCTIONS,
    LAMBDA_PYTHON_VERSION,
    QUEUES,
    SCHEDULES,
    STATE_MACHINES,
    EventRuleSpec,
    function,
    queue,
    render_pattern,
    state_machine_variables,
)
from tunelab.composition.state_machines import definition
from tunelab.domain.layout import UPLOADS_PREFIX
from tunelab.entrypoints.api import deps as api_deps
from tunelab.entrypoints.api.app import PUBLIC_PATHS
from tunelab.local.aws_access import AwsAccess, remove_access, write_access
from tunelab.local.aws_guard import AwsEndpoint, sign_step_functions_calls, signed_request_headers
from tunelab.local.context import LocalContext
from tunelab.local.environment import SERVICE_NAME, early_environment
from tunelab.local.files import PRIVATE_FILE_MODE, UnsafeFile, secure_data_dir
from tunelab.local.http_front import HttpFront, PortInUse
from tunelab.local.models import registered_folders
from tunelab.local.moto_dynamodb import install_atomic_dynamodb
from tunelab.local.moto_lambda import (
    LambdaContext,
    install_in_process_lambda,
    resolve_handler,
    tunelab_handlers,
)
from tunelab.local.outbox import OUTBOX_DIR, Outbox, capture_sesv2_simple
from tunelab.local.paths import DEFAULT_LOCAL_PLAN, DEFAULT_PORT, STACK_NAME, default_data_dir, records_table
from tunelab.local.persistence import DurableState
from tunelab.local.plans import apply_plans, recorded_plans
from tunelab.local.scheduler import ScheduleRunner
from tunelab.local.tokens import load_or_create_secret, verify_token

logger = logging.getLogger("tunelab.local")

LOOPBACK = "127.0.0.1"
REGION = "us-east-1"
SENDER_EMAIL = "tunelab@tunelab.local"
LOCAL_DEPLOY_POLL_SECONDS = 2
PROVIDER_MODULE = "tunelab.local.provider"
API_FUNCTION = "Api"
RECONCILER_FUNCTION = "Reconciler"
# Handlers besides tunelab's own that the runtime's Lambda functions may run, comma-separated: for
# tests that watch the stack through a probe function of their own (`tests/e2e/probe.py`).
EXTRA_HANDLERS_VARIABLE = "TUNELAB_LOCAL_EXTRA_HANDLERS"
# The repository root (shared/tunelab/local/runtime.py → four levels up): `functions/` lives there.
_REPO_ROOT = Path(__file__).resolve().parents[3]


class RuntimeAlreadyRunning(RuntimeError):  # noqa: N818
    """Another LocalRuntime is running in this process (moto's state and the environment are shared)."""


class DataDirInUse(RuntimeError):  # noqa: N818  # named for what happened
    """Another local runtime (any process) runs on this data dir: its job and deployment folders
    are named by model, so two runtimes on one dir would take each other's."""

    def __init__(self, data_dir: Path, holder: str) -> None:
        who = f" (process {holder})" if holder else ""
        super().__init__(
            f"another tunelab local runtime{who} uses the data dir {data_dir}: use that runtime, "
            "stop it, or pass --data-dir"
        )


LOCK_FILE = "runtime.lock"


def _lock_data_dir(data_dir: Path) -> Callable[[], None]:
    """Hold an exclusive lock on the data dir while the runtime runs (released by the returned
    callable, or by the OS when the process ends, however it ends); `DataDirInUse` if held."""
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE)
    handle = os.fdopen(fd, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise DataDirInUse(data_dir, holder) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()

    def release() -> None:
        handle.seek(0)
        handle.truncate()
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()

    return release


@dataclass(frozen=True)
class StackNames:
    """The names of the embedded stack's resources (`<stack>-...`, like the CDK app's)."""

    stack: str = STACK_NAME

    @property
    def table(self) -> str:
        return records_table(self.stack)

    @property
    def idempotency_table(self) -> str:
        return f"{self.stack}-idempotency"

    @property
    def datasets_bucket(self) -> str:
        return f"{self.stack}-datasets"

    @property
    def artifacts_bucket(self) -> str:
        return f"{self.stack}-artifacts"

    @property
    def event_bus(self) -> str:
        return f"{self.stack}-events"

    @property
    def schedule_group(self) -> str:
        return f"{self.stack}-auto-undeploy"

    @property
    def delivery_dlq(self) -> str:
        return f"{self.stack}-event-delivery-dlq"

    @property
    def schedules_dlq(self) -> str:
        return f"{self.stack}-schedules-dlq"

    def function(self, logical_id: str) -> str:
        return f"{self.stack}-{function(logical_id).name_suffix}"

    def role(self, purpose: str) -> str:
        return f"{self.stack}-{purpose}"


_RUNNING: LocalRuntime | None = None
_RUNNING_LOCK = threading.Lock()


def _placeholder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "The local runtime runs this function's handler in its own process.\n")
    return buffer.getvalue()


def ensure_functions_importable() -> None:
    """Put the repository root on `sys.path` so `functions.<module>` (the Lambda entries) import."""
    if (_REPO_ROOT / "functions" / "api.py").is_file() and str(_REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(_REPO_ROOT))


def _provider_module() -> ModuleType | None:
    try:
        return importlib.import_module(PROVIDER_MODULE)
    except ModuleNotFoundError as error:
        if error.name != PROVIDER_MODULE:
            raise
        return None


class LocalRuntime:
    """The embedded backend; `start()`, `stop()`, `wait()`, or use it as a context manager.

    `port=0` takes a free port (tests). `base_url` is the API's root (`http://127.0.0.1:<port>`),
    `moto_endpoint` the AWS endpoint every client of this runtime uses.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = DEFAULT_PORT,
        *,
        host: str = LOOPBACK,
        scheduler_interval: float = 1.0,
        outbox_interval: float = 0.5,
        log_level: str = "WARNING",
        names: StackNames | None = None,
        extra_handlers: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        # Read before start() sets TUNELAB_LOCAL_DATA_DIR to this runtime's own data dir.
        self._default_data_dir = default_data_dir()
        self.requested_port = port
        self.host = host
        self.names = names or StackNames()
        self.log_level = log_level
        self._scheduler_interval = scheduler_interval
        self._outbox_interval = outbox_interval
        self._front: HttpFront | None = None
        self._moto: AwsEndpoint | None = None
        self._moto_endpoint: str | None = None
        self._access: AwsAccess | None = None
        self.extra_handlers = extra_handlers or tuple(
            name.strip() for name in os.environ.get(EXTRA_HANDLERS_VARIABLE, "").split(",") if name.strip()
        )
        self._undo: list[tuple[str, Callable[[], None]]] = []
        self._saved_env: dict[str, str | None] = {}
        self._stopped = threading.Event()
        self._started = False
        self._account_id = "123456789012"
        self.scheduler: ScheduleRunner | None = None
        self.outbox: Outbox | None = None
        self.context: LocalContext | None = None
        self.function_arns: dict[str, str] = {}
        self.state_machine_arns: dict[str, str] = {}
        self.queue_urls: dict[str, str] = {}
        self.rule_names: dict[str, str] = {}
        self.training_available = False
        self.training_note = ""
        self.durable_state: DurableState | None = None
        # What the recovery sweep at start did (`reconcile`'s report).
        self.recovery: dict[str, Any] = {}

    # --- properties ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API's root URL (the contract's paths start with `/v1`)."""
        if self._front is None:
            raise RuntimeError("the runtime is not started")
        return self._front.base_url

    @property
    def port(self) -> int:
        if self._front is None:
            raise RuntimeError("the runtime is not started")
        return self._front.port

    @property
    def moto_endpoint(self) -> str:
        """The AWS endpoint (moto server) the handlers and any boto3 client of this runtime use."""
        if self._moto_endpoint is None:
            raise RuntimeError("the runtime is not started")
        return self._moto_endpoint

    @property
    def aws_access(self) -> AwsAccess:
        """This run's AWS endpoint and the credentials it accepts (also in the data dir, 0600)."""
        if self._access is None:
            raise RuntimeError("the runtime is not started")
        return self._access

    @property
    def account_id(self) -> str:
        return self._account_id

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / OUTBOX_DIR

    @property
    def running(self) -> bool:
        return self._started and not self._stopped.is_set()

    def client(self, service: str) -> Any:
        """A boto3 client of `service` on the embedded endpoint, with this run's credentials."""
        return self._client_with(service, None)

    def _client_with(self, service: str, config: Config | None) -> Any:
        access = self.aws_access
        return boto3.client(  # type: ignore[call-overload]
            service,
            region_name=REGION,
            endpoint_url=access.endpoint_url,
            aws_access_key_id=access.access_key_id,
            aws_secret_access_key=access.secret_access_key,
            config=config,
        )

    # --- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> LocalRuntime:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start everything (see the module's description); `PortInUse` when the API port is taken."""
        global _RUNNING  # noqa: PLW0603  # one runtime per process
        with _RUNNING_LOCK:
            if _RUNNING is not None:
                raise RuntimeAlreadyRunning("a tunelab local runtime is already running in this process")
            _RUNNING = self
        self._stopped.clear()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self._started = True

    def _start(self) -> None:
        secure_data_dir(self.data_dir)
        self._undo.append(("data dir lock", _lock_data_dir(self.data_dir)))
        secret = load_or_create_secret(self.data_dir)
        # What `local.environment.prepare` set before this module loaded (a caller that did not gets
        # it for what loads from now on); `_apply_environment` sets the rest.
        for name, value in early_environment(self.log_level).items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        ensure_functions_importable()

        self._front = HttpFront(
            handler=lambda: resolve_handler(self._api_handler_name()),
            verify=lambda token: verify_token(secret, token),
            context=self._api_context,
            public_paths=PUBLIC_PATHS,
            host=self.host,
            port=self.requested_port,
            allowed_origins=_allowed_origins,
        )
        self._start_moto()
        if self.extra_handlers:
            logger.warning(
                "Lambda functions may also run these handlers (%s): %s",
                EXTRA_HANDLERS_VARIABLE,
                ", ".join(self.extra_handlers),
            )
        handlers = tunelab_handlers() | set(self.extra_handlers)
        self._undo.append(("in-process Lambda", install_in_process_lambda(handlers)))
        self._undo.append(("atomic DynamoDB", install_atomic_dynamodb()))
        self._undo.append(("SES capture", capture_sesv2_simple()))
        self._apply_environment()
        provider = _provider_module()
        self._create_stack(extra_rules=tuple(getattr(provider, "LOCAL_EVENT_RULES", ()) if provider else ()))
        self.context = LocalContext(
            data_dir=self.data_dir,
            endpoint_url=self.moto_endpoint,
            region=REGION,
            event_bus_name=self.names.event_bus,
            artifacts_bucket=self.names.artifacts_bucket,
            datasets_bucket=self.names.datasets_bucket,
            account_id=self._account_id,
        )
        self._install_provider(provider)
        self._recover()
        # The plans the operator recorded (`tunelab local token --plan`): the store starts empty.
        apply_plans(self.aws_access, recorded_plans(self.data_dir), table_name=self.names.table)
        self.scheduler = ScheduleRunner(
            scheduler=self.client("scheduler"), clients=self.client, poll_interval=self._scheduler_interval
        )
        self.scheduler.start()
        self._undo.append(("scheduler", self.scheduler.stop))
        from moto.backends import get_backend  # noqa: PLC0415  # moto is the local runtime's

        ses = get_backend("ses")
        account = self._account_id
        self.outbox = Outbox(
            folder=self.outbox_dir,
            sent_messages=lambda: list(ses[account][REGION].sent_messages),
            poll_interval=self._outbox_interval,
        )
        self.outbox.start()
        self._undo.append(("outbox", self.outbox.stop))
        self._front.start()
        logger.info("tunelab local runtime: API on %s, AWS endpoint %s", self.base_url, self.moto_endpoint)

    def stop(self) -> None:
        """Stop the front, the threads, the provider and moto; restore the environment. Idempotent."""
        global _RUNNING  # noqa: PLW0603
        # First no new requests, and no execution left to call a function while the rest stops.
        if self._front is not None:
            self._front.stop()
        if self._moto is not None:
            self._stop_executions()
        while self._undo:
            what, undo = self._undo.pop()
            try:
                undo()
            except Exception:  # stop the rest even when one part fails to stop
                logger.exception("stopping the %s failed", what)
        self._front = None
        self._moto = None
        self._restore_environment()
        self._stopped.set()
        with _RUNNING_LOCK:
            if _RUNNING is self:
                _RUNNING = None

    def wait(self) -> None:
        """Block until `stop()` (from another thread or a signal handler); Ctrl-C raises as usual."""
        while not self._stopped.wait(0.5):
            pass

    def request_stop(self) -> None:
        """Make `wait()` return (a signal handler's job); the caller then calls `stop()`."""
        self._stopped.set()

    # --- moto ------------------------------------------------------------------------------------

    def _start_moto(self) -> None:
        from moto.core.config import default_user_config  # noqa: PLC0415

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
        server = AwsEndpoint(host=LOOPBACK, port=0, region=REGION)
        server.start()
        self._moto = server
        self._access = server.access
        self._moto_endpoint = server.url

        def stop_moto() -> None:
            try:
                self._moto_api("reset")  # the state is the runtime's: gone with it
            finally:
                server.stop()

        self._undo.append(("moto server", stop_moto))
        write_access(self.data_dir, server.access)
        self._undo.append(("AWS credentials file", lambda: remove_access(self.data_dir, server.access)))
        self._undo.append(("Step Functions signing", sign_step_functions_calls(server.access)))
        self._moto_api("reset")  # a fresh account, whatever an earlier runtime of this process left
        previous = dict(default_user_config.get("stepfunctions") or {})
        self._moto_api("config", {"stepfunctions": {"execute_state_machine": True}})
        self._undo.append(("moto config", lambda: self._moto_api("config", {"stepfunctions": previous})))

    def _stop_executions(self) -> None:
        """Stop running executions, so that their worker threads end with the runtime."""
        try:
            sfn = self.client("stepfunctions")
            for machine in sfn.list_state_machines()["stateMachines"]:
                running = sfn.list_executions(
                    stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING"
                )
                for execution in running["executions"]:
                    sfn.stop_execution(
                        executionArn=execution["executionArn"], cause="the local runtime stopped"
                    )
        except Exception:  # stopping goes on; the executions' threads are daemons
            logger.debug("stopping running executions failed", exc_info=True)

    def _moto_api(self, action: str, body: Mapping[str, Any] | None = None) -> None:
        url = f"{self.moto_endpoint}/moto-api/{action}"
        data = json.dumps(body or {}).encode()
        request = urllib.request.Request(  # noqa: S310  # our own loopback server
            url, data=data, method="POST", headers=signed_request_headers(self.aws_access, "POST", url, data)
        )
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            answer.read()

    # --- environment -----------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        """The variables the handlers read (the fields of `composition.settings.Settings` and AWS's own)."""
        names = self.names
        account = self._account_id
        access = self.aws_access
        environment = {
            "AWS_ENDPOINT_URL": self.moto_endpoint,
            "AWS_ACCESS_KEY_ID": access.access_key_id,
            "AWS_SECRET_ACCESS_KEY": access.secret_access_key,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            # moto's Step Functions executor calls the other services at localhost:$MOTO_PORT.
            "MOTO_PORT": self.moto_endpoint.rsplit(":", 1)[1],
            "RUNTIME": "local",
            "TABLE_NAME": names.table,
            "IDEMPOTENCY_TABLE_NAME": names.idempotency_table,
            "DATASETS_BUCKET": names.datasets_bucket,
            "ARTIFACTS_BUCKET": names.artifacts_bucket,
            "EVENT_BUS_NAME": names.event_bus,
            "SENDER_EMAIL": SENDER_EMAIL,
            "SCHEDULE_GROUP": names.schedule_group,
            "SCHEDULER_ROLE_ARN": f"arn:aws:iam::{account}:role/{names.role('scheduler')}",
            "AUTO_UNDEPLOY_TARGET_ARN": self._function_arn(AUTO_UNDEPLOY_FUNCTION),
            "SCHEDULES_DLQ_ARN": f"arn:aws:sqs:{REGION}:{account}:{names.schedules_dlq}",
            "BEDROCK_ROLE_ARN": f"arn:aws:iam::{account}:role/{names.role('bedrock')}",
            "PLATFORM_ACCOUNT_ID": account,
            # Until the operator records another (`tunelab local token --plan P`).
            "DEFAULT_PLAN": DEFAULT_LOCAL_PLAN,
            # A local deployment loads in seconds: look again soon rather than after half a minute.
            "DEPLOY_POLL_SECONDS": str(LOCAL_DEPLOY_POLL_SECONDS),
            "TUNELAB_LOCAL_DATA_DIR": str(self.data_dir),
            "LOG_LEVEL": self.log_level,
            "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
            "POWERTOOLS_METRICS_NAMESPACE": "tunelab",
            "POWERTOOLS_LOG_LEVEL": self.log_level,
            "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
            "POWERTOOLS_METRICS_DISABLED": "true",
            "NO_PROXY": ",".join(filter(None, [os.environ.get("NO_PROXY"), LOOPBACK, "localhost"])),
        }
        for spec in STATE_MACHINES:
            name = f"{names.stack}-{spec.name_suffix}"
            environment[spec.settings_field.upper()] = (
                f"arn:aws:states:{REGION}:{account}:stateMachine:{name}"
            )
        return environment

    def _function_arn(self, logical_id: str) -> str:
        return f"arn:aws:lambda:{REGION}:{self._account_id}:function:{self.names.function(logical_id)}"

    def _apply_environment(self) -> None:
        environment = self.environment()
        removed = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "SES_CONFIGURATION_SET")
        for name in (*environment, *removed):
            self._saved_env.setdefault(name, os.environ.get(name))
        for name in removed:
            os.environ.pop(name, None)
        os.environ.update(environment)
        self._forget_cached_configuration()

    def _restore_environment(self) -> None:
        if not self._saved_env:
            return
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()
        self._forget_cached_configuration()

    @staticmethod
    def _forget_cached_configuration() -> None:
        api_deps.reset()

    # --- the stack -------------------------------------------------------------------------------

    def _create_stack(self, extra_rules: tuple[EventRuleSpec, ...] = ()) -> None:
        names = self.names
        account = self._account_id = str(self.client("sts").get_caller_identity()["Account"])
        if account != os.environ.get("PLATFORM_ACCOUNT_ID"):
            self._apply_environment()  # moto runs with another account id (MOTO_ACCOUNT_ID)

        dynamodb = self.client("dynamodb")
        for table, table_kwargs, ttl in (
            (names.table, TABLE_DEFINITION, TTL_ATTRIBUTE),
            (names.idempotency_table, IDEMPOTENCY_TABLE_DEFINITION, IDEMPOTENCY_TTL_ATTRIBUTE),
        ):
            dynamodb.create_table(TableName=table, **table_kwargs)
            dynamodb.update_time_to_live(
                TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl}
            )
        state = self._durable_state()
        state.restore_tables()

        s3 = self.client("s3")
        for bucket in (names.datasets_bucket, names.artifacts_bucket):
            s3.create_bucket(Bucket=bucket)
        # The kept objects first: a restored dataset must not reach the upload rule again.
        state.restore_buckets()
        # As the CDK app's datasets bucket: object events go to EventBridge (the upload rule).
        s3.put_bucket_notification_configuration(
            Bucket=names.datasets_bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )

        iam = self.client("iam")
        trust = json.dumps({"Version": "2012-10-17", "Statement": []})
        roles = {}
        for purpose in ("lambda", "states", "scheduler", "bedrock"):
            created = iam.create_role(RoleName=names.role(purpose), AssumeRolePolicyDocument=trust)
            roles[purpose] = created["Role"]["Arn"]

        lam = self.client("lambda")
        code = _placeholder_zip()
        for spec in FUNCTIONS:
            created = lam.create_function(
                FunctionName=names.function(spec.logical_id),
                Runtime=f"python{LAMBDA_PYTHON_VERSION}",
                Role=roles["lambda"],
                Handler=spec.handler,
                Code={"ZipFile": code},
                Description=spec.description,
                Timeout=spec.timeout_seconds,
                MemorySize=spec.memory_mb,
            )
            self.function_arns[spec.logical_id] = created["FunctionArn"]

        events = self.client("events")
        events.create_event_bus(Name=names.event_bus)
        sqs = self.client("sqs")
        delivery_dlq = sqs.create_queue(QueueName=names.delivery_dlq)["QueueUrl"]
        delivery_dlq_arn = self._queue_arn(sqs, delivery_dlq)
        # Where Scheduler would put an auto-undeploy it could not deliver (every schedule names it).
        sqs.create_queue(
            QueueName=names.schedules_dlq, Attributes={"MessageRetentionPeriod": str(14 * 86400)}
        )
        queue_arns: dict[str, str] = {}
        for queue_spec in QUEUES:
            consumer = function(queue_spec.consumer)
            dlq_url = sqs.create_queue(
                QueueName=queue_spec.dlq_name,
                Attributes={"MessageRetentionPeriod": str(queue_spec.dlq_retention_days * 86400)},
            )["QueueUrl"]
            url = sqs.create_queue(
                QueueName=queue_spec.name,
                Attributes={
                    "MessageRetentionPeriod": str(queue_spec.retention_days * 86400),
                    "VisibilityTimeout": str(queue_spec.visibility_timeout_seconds(consumer.timeout_seconds)),
                    "RedrivePolicy": json.dumps(
                        {
                            "deadLetterTargetArn": self._queue_arn(sqs, dlq_url),
                            "maxReceiveCount": queue_spec.max_receive_count,
                        }
                    ),
                },
            )["QueueUrl"]
            self.queue_urls[queue_spec.logical_id] = url
            queue_arns[queue_spec.logical_id] = self._queue_arn(sqs, url)
            lam.create_event_source_mapping(
                EventSourceArn=queue_arns[queue_spec.logical_id],
                FunctionName=self.function_arns[queue_spec.consumer],
                BatchSize=queue_spec.batch_size,
                MaximumBatchingWindowInSeconds=queue_spec.max_batching_window_seconds,
                FunctionResponseTypes=["ReportBatchItemFailures"],
                Enabled=True,
            )

        values = {"DatasetsBucketName": names.datasets_bucket}
        for rule in (*EVENT_RULES, *extra_rules):
            queue(rule.target_queue)  # a rule must target a queue of the stack
            bus = names.event_bus if rule.bus == "tunelab" else "default"
            rule_name = f"{names.stack}-{rule.logical_id}"
            events.put_rule(
                Name=rule_name,
                EventBusName=bus,
                Description=rule.description,
                EventPattern=json.dumps(render_pattern(rule.event_pattern, values)),
                State="ENABLED",
            )
            events.put_targets(
                Rule=rule_name,
                EventBusName=bus,
                Targets=[
                    {
                        "Id": rule.target_queue,
                        "Arn": queue_arns[rule.target_queue],
                        "RetryPolicy": {
                            "MaximumRetryAttempts": rule.retry_attempts,
                            "MaximumEventAgeInSeconds": rule.max_event_age_seconds,
                        },
                        "DeadLetterConfig": {"Arn": delivery_dlq_arn},
                    }
                ],
            )
            self.rule_names[rule.logical_id] = rule_name

        substitutions = {
            name: self.function_arns[target]
            for name, target in state_machine_variables().items()
            if target in self.function_arns
        }
        substitutions.update(
            TableName=names.table,
            EventBusName=names.event_bus,
            DatasetsBucketName=names.datasets_bucket,
            ArtifactsBucketName=names.artifacts_bucket,
        )
        sfn = self.client("stepfunctions")
        for machine in STATE_MACHINES:
            created = sfn.create_state_machine(
                name=f"{names.stack}-{machine.name_suffix}",
                definition=definition(machine.asl_file, substitutions),
                roleArn=roles["states"],
                type="STANDARD",
            )
            self.state_machine_arns[machine.logical_id] = created["stateMachineArn"]
            expected = os.environ[machine.settings_field.upper()]
            if created["stateMachineArn"] != expected:
                raise RuntimeError(f"state machine ARN {created['stateMachineArn']} is not {expected}")

        scheduler = self.client("scheduler")
        scheduler.create_schedule_group(Name=names.schedule_group)
        for schedule in SCHEDULES:
            scheduler.create_schedule(
                Name=f"{names.stack}-{schedule.logical_id}",
                Description=schedule.description,
                ScheduleExpression=schedule.expression,
                FlexibleTimeWindow={"Mode": "OFF"},
                Target={
                    "Arn": self.function_arns[schedule.target_function],
                    "RoleArn": roles["scheduler"],
                    "RetryPolicy": {"MaximumEventAgeInSeconds": 900, "MaximumRetryAttempts": 2},
                },
                State="ENABLED",
            )

        state.restore_schedules()

        # SES refuses to send from an unverified identity; moto verifies at once.
        self.client("ses").verify_email_identity(EmailAddress=SENDER_EMAIL)
        # From here on, what the endpoint answers is on disk first.
        state.activate()
        assert self._moto is not None
        self._moto.guard.keep_writes(state.after_write)
        self._undo.append(("durable state", state.close))
        self._undo.append(
            ("keeping writes", lambda: self._moto.guard.keep_writes(None) if self._moto else None)
        )
        logger.info("tunelab local runtime: %s", state.report.describe())

    def _durable_state(self) -> DurableState:
        names = self.names
        self.durable_state = DurableState(
            data_dir=self.data_dir,
            clients=self.client,
            tables=(names.table, names.idempotency_table),
            buckets=(names.datasets_bucket, names.artifacts_bucket),
            schedule_group=names.schedule_group,
            flush_outbox=lambda: self.outbox.flush() if self.outbox is not None else None,
        )
        return self.durable_state

    @staticmethod
    def _queue_arn(sqs: Any, url: str) -> str:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
        return str(attributes["QueueArn"])

    # --- the API and the provider --------------------------------------------------------------

    def _api_handler_name(self) -> str:
        return function(API_FUNCTION).handler

    def _api_context(self) -> LambdaContext:
        spec = function(API_FUNCTION)
        return LambdaContext(
            function_name=self.names.function(API_FUNCTION),
            invoked_function_arn=self._function_arn(API_FUNCTION),
            memory_limit_in_mb=spec.memory_mb,
            timeout_seconds=spec.timeout_seconds,
        )

    def _install_provider(self, provider: ModuleType | None) -> None:
        if provider is None or not hasattr(provider, "install"):
            self.training_available = False
            self.training_note = (
                "training is unavailable: the local provider (tunelab.local.provider) is not installed"
            )
            logger.warning(self.training_note)
            return
        assert self.context is not None
        shutdown = provider.install(self.context)
        self._undo.append(("local provider", shutdown))
        self.training_available = True
        self.training_note = "training runs on this machine (the local provider)"

    def _recover(self) -> None:
        """Settle what the last run left in flight: uploads not yet validated are announced again, and
        — its workflow executions were lost with it — the reconciler looks at every model in a
        transient status now (`reconcile(recover=True)`)."""
        try:
            self._redeliver_uploads()
            # As long as the function may run, and once: a second sweep must not start beside the first.
            lam = self._client_with(
                "lambda",
                Config(
                    read_timeout=function(RECONCILER_FUNCTION).timeout_seconds + 30,
                    retries={"max_attempts": 1},
                ),
            )
            answer = lam.invoke(
                FunctionName=self.function_arns[RECONCILER_FUNCTION],
                Payload=json.dumps({"recover": True}).encode(),
            )
            payload = json.loads(answer["Payload"].read() or b"{}")
        except (BotoCoreError, ClientError, ValueError) as error:
            # The runtime serves anyway; the scheduled sweep (every 15 minutes) settles what is left.
            logger.error("the recovery sweep at start failed (the scheduled one will run): %s", error)
            return
        if answer.get("FunctionError"):
            logger.error("the recovery sweep failed: %s", payload)
            return
        self.recovery = payload
        if any(payload.get(key) for key in ("checked", "errors")):
            logger.warning(
                "recovery sweep: %s",
                ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in payload.items() if value),
            )

    def _redeliver_uploads(self) -> None:
        """An object under the uploads prefix is a dataset file not yet validated (validation moves a
        good one to its lasting key and removes the upload): its "Object Created" event may have been
        lost with the last run, so each is written again in place, which S3 announces again; the
        validation is idempotent (`application.datasets.validate_upload`)."""
        s3 = self.client("s3")
        bucket = self.names.datasets_bucket
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=UPLOADS_PREFIX):
            for entry in page.get("Contents", []):
                head = s3.head_object(Bucket=bucket, Key=entry["Key"])
                s3.copy_object(
                    Bucket=bucket,
                    Key=entry["Key"],
                    CopySource={"Bucket": bucket, "Key": entry["Key"]},
                    MetadataDirective="REPLACE",
                    ContentType=head.get("ContentType") or "text/csv",
                    Metadata=head.get("Metadata") or {},
                )
                logger.warning("the upload %s is announced again, to be validated", entry["Key"])

    # --- what to tell the user -----------------------------------------------------------------

    def describe(self) -> list[str]:
        """Where things are and what survives a restart, for the start-up message."""
        exports = []
        if self.port != DEFAULT_PORT:
            exports.append(f"export TUNELAB_API_URL={self.base_url}")
        if self.data_dir != self._default_data_dir:
            exports.append(f"export TUNELAB_LOCAL_DATA_DIR={self.data_dir}")
        folders = [
            f"                  {model_id}: {folder}"
            for model_id, folder in registered_folders(self.data_dir)
        ]
        return [
            "tunelab local runtime is up",
            f"  API:            {self.base_url}/v1   (health: {self.base_url}/v1/health)",
            "  token:          tunelab local token --workspace W --email E"
            + (f" --data-dir {self.data_dir}" if self.data_dir != self._default_data_dir else ""),
            *([f"  CLI:            {'; '.join(exports)}"] if exports else []),
            f"  AWS endpoint:   {self.moto_endpoint}   (moto; only this run's credentials:",
            '                  eval "$(tunelab local aws-env'
            + (f" --data-dir {self.data_dir}" if self.data_dir != self._default_data_dir else "")
            + ')" for the aws CLI and boto3)',
            f"  data dir:       {self.data_dir}",
            "                  trained models, local copies of datasets, the token secret",
            f"  outbox:         {self.outbox_dir}   (every email tunelab sends, as .eml)",
            f"  training:       {self.training_note}",
            *(["  model folders:", *folders] if folders else []),
            *(
                [f"  restored:       {self.durable_state.report.describe()}"]
                if self.durable_state is not None and self.durable_state.report.items
                else []
            ),
            "State: kept in the data dir (state/) before each write is answered: records, datasets, models,",
            "       schedules and emails survive a stop or a kill; at the next start unfinished jobs resume",
            "       from their last checkpoint and deployments load again. Press Ctrl-C to stop.",
        ]


def _allowed_origins() -> tuple[str, ...]:
    """The browser origins the API function answers with CORS (its `ALLOWED_ORIGINS` setting)."""
    return tuple(
        origin.strip() for origin in os.environ.get("ALLOWED_ORIGINS", "").split(",") if origin.strip()
    )


__all__ = [
    "DEFAULT_PORT",
    "DataDirInUse",
    "LocalRuntime",
    "PortInUse",
    "RuntimeAlreadyRunning",
    "StackNames",
    "UnsafeFile",
    "default_data_dir",
]
