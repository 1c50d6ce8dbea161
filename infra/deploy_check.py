"""``python -m infra.deploy_check STAGE`` (``make deploy-check STAGE=prod``): package the stage, lint its templates
with cfn-lint's informational rules too, then deploy both stacks into an AWS emulator (moto's CloudFormation, in
this process) far enough to prove the wiring, without an AWS account.

1. ``make package``'s work: ``out/STAGE/sam.json`` and ``checker.json``, linted (``infra.package``).
2. Each template's SAM transform is expanded with aws-sam-translator, as CloudFormation would, its code pointed at
   an emulated artifacts bucket (what ``aws cloudformation package`` does).
3. The resources moto's CloudFormation cannot create (``not_emulated``, listed in docs/deploy.md) are taken out;
   a reference to one becomes a placeholder, so everything that refers to them still deploys.  cfn-lint has
   already checked those resources and every reference to them.
4. The rest is created as a stack, with the stage's parameters; the stack must reach ``CREATE_COMPLETE`` with every
   emulated resource created.  Then the wiring is read back from the emulator: each function's environment, role
   and event sources, the queues' dead-letter queues, the tables' streams.

It deploys nothing anywhere: moto lives in this process and is gone when it ends.
"""

from __future__ import annotations

import argparse
import collections
import copy
import io
import json
import os
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
ARTIFACTS = "vigil-deploy-check-artifacts"
PLACEHOLDER = "not-emulated"
# The stage's parameters as a deployer passes them (docs/deploy.md); the secrets are created in the emulator.
PARAMETERS = {
    "AppUrl": "https://app.example.com",
    "EmailFrom": "Vigil <no-reply@example.com>",
    "SupportEmail": "support@example.com",
    "AlarmEmail": "ops@example.com",
    "SmsSpendAlarmUsd": "0.8",
    "StripePricePro": "price_pro",
    "StripePriceEnterprise": "price_enterprise",
    "HomeRegion": REGION,
}
SECRETS = ("secret-key", "stripe-secret-key", "stripe-webhook-secret")


class DeployCheckError(RuntimeError):
    """The templates do not deploy; the message says where."""


@dataclass
class Deployed:
    stack: str
    created: dict[str, str]  # logical id → resource type, as the emulator's stack lists them
    not_emulated: dict[str, str]  # logical id → resource type, taken out before the deploy
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)  # logical id → get_function_configuration
    mappings: list[dict[str, Any]] = field(default_factory=list)  # every event source mapping

    def lines(self) -> list[str]:
        kinds = collections.Counter(self.not_emulated.values())
        return [
            f"{self.stack}: CREATE_COMPLETE in the emulator, {len(self.created)} resources created",
            f"  not emulated ({len(self.not_emulated)}, checked by cfn-lint only): "
            + ", ".join(f"{kind} x{n}" for kind, n in sorted(kinds.items())),
        ]


def expand(template: dict[str, Any], parameters: dict[str, str], code: dict[str, str]) -> dict[str, Any]:
    """The template as CloudFormation runs it after the SAM transform; ``code`` maps a function's local CodeUri
    (a zip beside the template) to the artifacts object it was uploaded as."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}  # the templates name every managed policy by ARN

    template = copy.deepcopy(template)
    for resource in template["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            local = resource["Properties"]["CodeUri"]
            resource["Properties"]["CodeUri"] = f"s3://{ARTIFACTS}/{code[local]}"
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)  # the translator asks boto3 for a region
    return dict(transform(template, parameters, NoManagedPolicies()))


# Types moto models but cannot create from these templates: its REST API ignores the OpenAPI body (so a deployment
# finds no method); the body is imported on its own instead (``api_methods``).
UNUSABLE = {"AWS::ApiGateway::Deployment": "moto's REST API does not read its OpenAPI body"}


def not_emulated(template: dict[str, Any]) -> dict[str, str]:
    """The resources moto's CloudFormation has no model for (it would skip them, then fail on a reference)."""
    from moto.cloudformation.parsing import get_model_map

    known = get_model_map()
    return {
        name: r["Type"] for name, r in template["Resources"].items() if r["Type"] not in known or r["Type"] in UNUSABLE
    }


def _without(value: Any, gone: set[str]) -> Any:
    """``value`` with every reference to a resource in ``gone`` replaced by a placeholder."""
    if isinstance(value, list):
        return [_without(v, gone) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, inner),) = value.items()
        if key == "Ref" and inner in gone:
            return PLACEHOLDER
        if key == "Fn::GetAtt":
            target = inner[0] if isinstance(inner, list) else str(inner).split(".")[0]
            if target in gone:
                return PLACEHOLDER
        if key == "Fn::Sub":
            text, variables = (inner, {}) if isinstance(inner, str) else (inner[0], inner[1])
            for name in gone:
                for form in (f"${{{name}}}", *(f"${{{name}.{a}}}" for a in ("Arn", "DomainName", "Id", "Name"))):
                    text = text.replace(form, PLACEHOLDER)
            return {"Fn::Sub": [text, _without(variables, gone)] if variables else text}
    return {k: _without(v, gone) for k, v in value.items()}


def emulatable(template: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The template minus what moto cannot create, every reference to it a placeholder; and what was taken out."""
    gone = not_emulated(template)
    kept = {name: r for name, r in template["Resources"].items() if name not in gone}
    for resource in kept.values():
        depends = resource.get("DependsOn")
        if depends is not None:
            names = [depends] if isinstance(depends, str) else depends
            remaining = [d for d in names if d not in gone]
            if remaining:
                resource["DependsOn"] = remaining
            else:
                del resource["DependsOn"]
    result = _without({**template, "Resources": kept}, set(gone))
    result["Outputs"] = {
        name: output
        for name, output in template.get("Outputs", {}).items()
        if PLACEHOLDER not in json.dumps(_without(output, set(gone)))
    }
    return result, gone


def deploy(name: str, template: dict[str, Any], parameters: dict[str, str]) -> Deployed:
    """Create the stack in the (already started) emulator and read back what it made."""
    import boto3

    body, gone = emulatable(template)
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=ARTIFACTS, Key=f"{name}.json", Body=json.dumps(body).encode())
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    wanted = {k: v for k, v in parameters.items() if k in template.get("Parameters", {})}
    try:
        cloudformation.create_stack(
            StackName=name,
            TemplateURL=f"https://{ARTIFACTS}.s3.amazonaws.com/{name}.json",
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in wanted.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
    except Exception as exc:  # whatever the emulator raises: say which stack and why
        raise DeployCheckError(f"{name} does not deploy in the emulator: {exc}") from exc
    (stack,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise DeployCheckError(f"{name}: {stack['StackStatus']} {stack.get('StackStatusReason', '')}")
    listed = cloudformation.list_stack_resources(StackName=name)["StackResourceSummaries"]
    created = {r["LogicalResourceId"]: r["ResourceType"] for r in listed if r["ResourceStatus"] == "CREATE_COMPLETE"}
    missing = sorted(set(body["Resources"]) - set(created))
    if missing:
        raise DeployCheckError(f"{name}: the emulator did not create {', '.join(missing)}")
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in listed}
    lambda_ = boto3.client("lambda", region_name=REGION)
    deployed = Deployed(name, created, gone)
    for logical, kind in created.items():
        if kind == "AWS::Lambda::Function":
            deployed.functions[logical] = lambda_.get_function_configuration(FunctionName=physical[logical])
    deployed.mappings = lambda_.list_event_source_mappings()["EventSourceMappings"]
    return deployed


def check(stage: str, out: Path) -> list[Deployed]:
    """Package ``stage`` into ``out`` (linted), then deploy its checker stack and main stack into the emulator."""
    from infra import package

    main_template = package.package(stage, out)
    checker_template = package.package_checker(out)
    for template in (main_template, checker_template):
        package.lint(template)
    return deploy_all(stage, out)


def deploy_all(stage: str, out: Path) -> list[Deployed]:
    """Deploy the packaged templates in ``out`` (``sam.json``, ``checker.json`` and their zips) into a fresh emulator:
    the checker stack, then the main stack, as docs/deploy.md orders them; raises on any wiring problem."""
    from moto import mock_aws

    from infra import package

    env = package.stage_environment(stage)
    prefix = env["TABLE_PREFIX"]
    parameters = {
        **PARAMETERS,
        "Stage": stage,
        "TablePrefix": prefix,
        "CheckRegions": env.get("CHECK_REGIONS", REGION),
        "LogLevel": env.get("LOG_LEVEL", "INFO"),
    }
    with mock_aws():
        import boto3

        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=ARTIFACTS)
        for archive in ("deployment.zip", "checker.zip"):
            s3.upload_file(str(out / archive), ARTIFACTS, archive)
        code = {"deployment.zip": "deployment.zip", "./deployment.zip": "deployment.zip", "checker.zip": "checker.zip"}
        secrets = boto3.client("secretsmanager", region_name=REGION)
        for secret in SECRETS:
            secrets.create_secret(Name=f"vigil/{stage}/{secret}", SecretString=os.urandom(24).hex())
        checker = deploy(
            f"{prefix}checker", expand(json.loads((out / "checker.json").read_text()), parameters, code), parameters
        )
        main = deploy(
            prefix.rstrip("-"), expand(json.loads((out / "sam.json").read_text()), parameters, code), parameters
        )
        problems = wiring_problems(stage, prefix, checker, main)
    if problems:
        raise DeployCheckError("the deployed stacks are not wired as designed:\n  " + "\n  ".join(problems))
    return [checker, main]


def wiring_problems(stage: str, prefix: str, checker: Deployed, main: Deployed) -> list[str]:
    """What the emulator's stacks show that differs from the design (infra/build.py): empty when all is wired."""
    import boto3

    from infra import build

    problems: list[str] = []
    account_region = f"{REGION}:123456789012"
    iam = boto3.client("iam")
    sqs = boto3.client("sqs", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    names = {config["FunctionArn"]: logical for d in (checker, main) for logical, config in d.functions.items()}

    # Every function: the stage's environment, the secret by reference only (none for the worker), its own role
    # with its own policy, and a handler its package holds.
    roles = [config["Role"] for d in (checker, main) for config in d.functions.values()]
    if len(set(roles)) != len(roles):
        problems.append("two functions share a role")
    packages = {}
    for d in (checker, main):
        for logical, config in d.functions.items():
            variables = config.get("Environment", {}).get("Variables", {})
            if (variables.get("VIGIL_STAGE"), variables.get("TABLE_PREFIX")) != (stage, prefix):
                problems.append(f"{logical}: VIGIL_STAGE/TABLE_PREFIX are not the stage's")
            secret = variables.get("SECRET_KEY")
            api = logical == build.CHALICE_FUNCTION
            expected = f"{{{{resolve:secretsmanager:vigil/{stage}/secret-key}}}}" if api else None
            if secret != expected:
                problems.append(f"{logical}: SECRET_KEY is {'set' if secret else 'missing'}, not {expected}")
            held = sorted(set(build.API_SECRETS) & set(variables))
            if not api and held:
                problems.append(f"{logical} holds the API's secrets: {', '.join(held)}")
            role = config["Role"].rpartition("/")[2]
            inline = iam.list_role_policies(RoleName=role)["PolicyNames"]
            if logical != build.CHECKER_FUNCTION and f"{prefix}{logical}" not in inline:
                problems.append(f"{logical}: its role {role} lacks its policy {prefix}{logical}")
            archive = "checker.zip" if logical == build.CHECKER_FUNCTION else "deployment.zip"
            if archive not in packages:
                body = s3.get_object(Bucket=ARTIFACTS, Key=archive)["Body"].read()
                packages[archive] = set(zipfile.ZipFile(io.BytesIO(body)).namelist())
            module = config["Handler"].rpartition(".")[0].replace(".", "/")
            if not {f"{module}.py", f"{module}/__init__.py"} & packages[archive]:
                problems.append(f"{logical}: its handler {config['Handler']} is not in {archive}")

    # Event sources: each stream function on its table's stream, failures parked; each queue consumer on its queue.
    sources = {
        (names.get(m["FunctionArn"], m["FunctionArn"]), m["EventSourceArn"]): m for d in (main,) for m in d.mappings
    }
    failures = f"arn:aws:sqs:{account_region}:{prefix}handler-failures-dlq"
    designed = build.build()["Resources"]
    for function, table in build.STREAM_FUNCTIONS.items():
        table_name = designed[table]["Properties"]["TableName"]["Fn::Sub"].replace("${TablePrefix}", prefix)
        found = [m for (f, arn), m in sources.items() if f == function and f":table/{table_name}/stream/" in arn]
        if len(found) != 1:
            problems.append(f"{function}: {len(found)} mappings on the {table_name} stream, not 1")
        elif found[0].get("DestinationConfig", {}).get("OnFailure", {}).get("Destination") != failures:
            problems.append(f"{function}: a batch given up on is not parked in {failures}")
    for function, queue in ((build.ALERT_FUNCTION, "alerts"), (build.EMAIL_FEEDBACK_FUNCTION, "email-events")):
        if (function, f"arn:aws:sqs:{account_region}:{prefix}{queue}") not in sources:
            problems.append(f"{function} does not read {prefix}{queue}")
    check_queue = f"arn:aws:sqs:{account_region}:{prefix}checks-{REGION}"
    if not any(m["EventSourceArn"] == check_queue for m in checker.mappings):
        problems.append(f"the checker does not read {prefix}checks-{REGION}")

    # Every work queue parks what fails five times in its own dead-letter queue.
    for url in sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", []):
        name = url.rpartition("/")[2]
        if name.endswith("-dlq"):
            continue
        policy = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"]).get("Attributes", {})
        target = json.loads(policy.get("RedrivePolicy", "{}")).get("deadLetterTargetArn", "")
        if target != f"arn:aws:sqs:{account_region}:{name}-dlq":
            problems.append(f"{name} has no dead-letter queue of its own ({target or 'none'})")
    return problems


def main(argv: list[str] | None = None) -> int:
    from infra.package import PackageError

    parser = argparse.ArgumentParser(prog="python -m infra.deploy_check", description=__doc__.splitlines()[0])
    parser.add_argument("stage", help="a stage of .chalice/config.json (dev or prod)")
    parser.add_argument("--out", type=Path, help="output directory (default: out/STAGE)")
    args = parser.parse_args(argv)
    out = (args.out or ROOT / "out" / args.stage).resolve()
    try:
        for deployed in check(args.stage, out):
            print("\n".join(deployed.lines()))
    except (PackageError, DeployCheckError) as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
