"""``python -m infra.seal STAGE`` (``make seal STAGE=prod``): seal the secrets a stage stored before it sealed them
(alert channels' configs, monitors' credential headers), once, after deploying the version that seals them.

Until then such an item still works: it is read as it is, and sealed at its next change (``chalicelib.sealing``).
This seals every one now: each is read (a Scan of the two tables, the keys and what tells whether it is sealed), then
written as a change of it would write it, under its version (an edit meanwhile is read again).  What is sealed
already is left as it is, so a second run seals nothing.  ``--dry-run`` counts and changes nothing.

The operator's AWS credentials are used: the tables' Scan, GetItem, PutItem and UpdateItem, the ``data_keys``
table, and ``kms:GenerateDataKey`` and ``kms:Decrypt`` on the stage's key for both purposes (an administrator's).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.alerts import channels
from chalicelib.alerts.kinds import KINDS
from chalicelib.alerts.models import ChannelModel
from chalicelib.monitors import credentials
from chalicelib.monitors import service as monitors
from chalicelib.monitors.models import MonitorModel
from chalicelib.settings import Settings, load_settings
from chalicelib.wiring import configure


@dataclass
class Report:
    channels: int = 0  # found in the clear (sealed now, unless a dry run)
    monitors: int = 0

    def line(self, dry_run: bool) -> str:
        verb = "to seal" if dry_run else "sealed"
        return f"{verb}: {self.channels} alert channel(s), {self.monitors} monitor(s)"


def seal_stage(settings: Settings, *, dry_run: bool = False) -> Report:
    """Seal every secret of the stage ``settings`` names that is still stored in the clear."""
    configure(settings)
    report = Report()
    for item in ChannelModel.scan(attributes_to_get=["team_id", "channel_id", "type", "config", "sealed_config"]):
        kind = KINDS.get(item.type)
        in_the_clear = item.sealed_config is None and kind is not None and any(kind.secrets(dict(item.config or {})))
        if in_the_clear and (dry_run or channels.seal_stored(item.team_id, item.channel_id)):
            report.channels += 1
    for monitor in MonitorModel.scan(attributes_to_get=["team_id", "monitor_id", "headers"]):
        in_the_clear = bool(credentials.in_the_clear(dict(monitor.headers.as_dict() if monitor.headers else {})))
        if in_the_clear and (dry_run or monitors.seal_stored(monitor.team_id, monitor.monitor_id)):
            report.monitors += 1
    return report


def main(argv: list[str] | None = None) -> int:
    from infra.package import PackageError, stage_target

    parser = argparse.ArgumentParser(prog="python -m infra.seal", description=__doc__.splitlines()[0])
    parser.add_argument("stage", help="a stage of .chalice/config.json (dev or prod)")
    parser.add_argument("--region", help="the home region (default: $AWS_REGION)")
    parser.add_argument("--dry-run", action="store_true", help="count what would be sealed, change nothing")
    args = parser.parse_args(argv)
    try:
        prefix, region = stage_target(args.stage, args.region)
    except PackageError as exc:
        print(exc, file=sys.stderr)
        return 2
    # Only the names (tables, the key's alias) and the region matter here, and no .env is read.
    settings = load_settings({"VIGIL_STAGE": "test", "TABLE_PREFIX": prefix, "AWS_REGION": region})
    try:
        report = seal_stage(settings, dry_run=args.dry_run)
    except (ClientError, BotoCoreError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(report.line(args.dry_run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
