"""The embedded local runtime: the whole tunelab backend on one machine, without an AWS account.

`tunelab local up` starts `runtime.LocalRuntime`: moto in server mode on loopback (the AWS services
tunelab uses), the stack created from `tunelab.composition.stack_definitions` (the data the CDK app deploys),
Lambda invocations run in this process by the same handler modules (`tunelab.local.moto_lambda`), an HTTP
front that turns requests into API Gateway proxy events for the API handler, and threads that fire
due EventBridge Scheduler schedules and write sent emails to an outbox folder.
"""
