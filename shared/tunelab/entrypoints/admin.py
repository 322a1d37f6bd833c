"""`tunelab-admin`: what an operator of a tunelab deployment does that no API request may do.

    tunelab-admin plan set --table TABLE --workspace W --plan P   # give a workspace a plan
    tunelab-admin plan show --table TABLE --workspace W            # a workspace's plan
    tunelab-admin lists backfill --table TABLE                      # index keys for older items

It runs with the operator's own AWS credentials (the usual `AWS_PROFILE` / environment), against the
records table the platform stack names in its `TableName` output; the API's roles cannot write a
plan from a request, and a user's token claims are ignored (`domain.identity`). The local runtime's
`tunelab local token --plan P` uses the same path against the runtime's own table.

Exit codes: 0 done, 2 bad arguments or a refused value, 1 the table could not be reached.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from tunelab.application.workspaces import set_plan
from tunelab.composition.wiring import operator_records_table, operator_workspaces
from tunelab.domain.errors import TunelabError
from tunelab.domain.identity import PLANS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunelab-admin", description=__doc__.split("\n\n")[0])
    groups = parser.add_subparsers(dest="group", required=True)
    plan = groups.add_parser("plan", help="a workspace's plan").add_subparsers(dest="action", required=True)
    for action, help_text in (("set", "give a workspace a plan"), ("show", "print a workspace's plan")):
        command = plan.add_parser(action, help=help_text)
        command.add_argument("--table", required=True, help="the records table (stack output TableName)")
        command.add_argument("--workspace", required=True, help="the workspace (custom:workspace claim)")
        command.add_argument("--region", default=None, help="the table's region (default: your AWS config's)")
        if action == "set":
            command.add_argument("--plan", required=True, choices=PLANS)
    lists = groups.add_parser("lists", help="the lists' index").add_subparsers(dest="action", required=True)
    command = lists.add_parser(
        "backfill",
        help="give models and datasets written before the list index its keys, and connections written "
        "before the daily re-check their place in it (once)",
    )
    command.add_argument("--table", required=True, help="the records table (stack output TableName)")
    command.add_argument("--region", default=None, help="the table's region (default: your AWS config's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    session = boto3.Session(region_name=args.region)
    workspaces = operator_workspaces(args.table, session=session)
    try:
        if args.group == "lists":
            given = operator_records_table(args.table, session=session).backfill_list_keys()
            print(f"{given} models, datasets and connections got their index keys.")
        elif args.action == "set":
            record = set_plan(workspaces, args.workspace, args.plan, default_plan=args.plan)
            print(f"Workspace {record.workspace_id} is on the {record.plan} plan.")
        else:
            found = workspaces.find(args.workspace)
            if found is None:
                print(f"There is no workspace '{args.workspace}' in {args.table}.", file=sys.stderr)
                return 2
            print(found.plan)
    except TunelabError as error:
        print(f"tunelab-admin: {error.message}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as error:
        print(f"tunelab-admin: could not reach the table {args.table}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
