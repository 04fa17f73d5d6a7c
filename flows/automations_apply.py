"""`mnistnn automations apply`: the notification block and the automations, on the current server.

Idempotent: each automation is found by its name and created, updated or left alone (duplicates
of a name are deleted, so one set remains); the block `mnistnn-notify` likewise. Nothing is
created before every setting and the YAML file have been checked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from flows import events
from flows.automations import BLOCK_NAME, Settings, render, shown
from mnistnn.errors import MnistnnError

#: The staleness rule's window starts at a completed nightly-retrain run or at this event.
APPLIED = "mnistnn.automations.applied"
STALE_DEPLOYMENT = "mnist-training/nightly-retrain"


@dataclass
class Outcome:
    """What apply did (or, with dry_run, would do), as printable lines."""

    lines: list[str] = field(default_factory=list)

    def add(self, verb: str, what: str) -> None:
        self.lines.append(f"{verb:<10}{what}")

    @property
    def changed(self) -> bool:
        return any(not line.startswith("unchanged") for line in self.lines)


def apply(settings: Settings, dry_run: bool = False) -> Outcome:
    """Create or update the block and every automation of the YAML file on PREFECT_API_URL."""
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    url = events.server_available()
    if url is None:
        raise MnistnnError("no Prefect server at PREFECT_API_URL: nothing applied")
    outcome = Outcome()
    block_id = _apply_block(settings.notify, outcome, dry_run)
    wanted = [
        AutomationCore.model_validate(spec)
        for spec in render(settings.values(block_id or "00000000-0000-0000-0000-000000000000"))
    ]
    with get_client(sync_client=True) as client:
        for automation in wanted:
            _apply_automation(client, automation, outcome, dry_run)
        if not dry_run:
            _arm_staleness(client)
    return outcome


def _block(url: str) -> Any:
    """The notification block for `url`: a JSON POST for http(s), else apprise."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook

    if url.startswith(("http://", "https://")):
        # `text` is what Slack, Mattermost and Teams-style receivers read; the others, both
        return CustomWebhookNotificationBlock.model_validate(
            {
                "name": BLOCK_NAME,
                "url": url,
                "json_data": {"subject": "{{subject}}", "body": "{{body}}", "text": "{{body}}"},
            }
        )
    # SlackWebhook hands any URL that is not a hooks.slack.com one to apprise as it is
    return SlackWebhook.model_validate({"url": url})


def _same_block(current: Any, wanted: Any) -> bool:
    """Same kind, same destination, same payload (what a message depends on)."""

    def data(block: Any) -> tuple[Any, ...]:
        url = block.url.get_secret_value() if hasattr(block.url, "get_secret_value") else block.url
        return type(block), url, getattr(block, "json_data", None), getattr(block, "method", None)

    return data(current) == data(wanted)


def _apply_block(url: str, outcome: Outcome, dry_run: bool) -> str | None:
    """The block document's id (None on a dry run that would create it)."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook

    wanted = _block(url)
    current = None
    for kind in (CustomWebhookNotificationBlock, SlackWebhook):
        try:
            found: Any = kind.load(BLOCK_NAME)
        except ValueError:  # no such block of this type
            continue
        if type(found) is type(wanted):
            current = found
        elif not dry_run:
            found.delete(BLOCK_NAME)  # the destination changed kind: one destination only
    what = f"block {BLOCK_NAME} ({wanted.get_block_type_slug()} -> {shown(url)})"
    if current is not None and _same_block(current, wanted):
        outcome.add("unchanged", what)
        return str(current._block_document_id)
    outcome.add("updated" if current is not None else "created", what)
    if dry_run:
        return None if current is None else str(current._block_document_id)
    return str(wanted.save(BLOCK_NAME, overwrite=True))


def _comparable(automation: Any) -> str:
    """The automation as canonical JSON without its ids (a trigger gets a new id each time)."""
    dumped = automation.model_dump(mode="json")
    dumped.pop("id", None)
    for key in ("created", "updated", "tags"):
        dumped.pop(key, None)
    dumped["trigger"].pop("id", None)
    return json.dumps(_sorted(dumped), sort_keys=True)


def _sorted(node: Any) -> Any:
    """Lists of strings sorted (the schema's sets come back in any order)."""
    if isinstance(node, dict):
        return {key: _sorted(value) for key, value in node.items()}
    if isinstance(node, list):
        items = [_sorted(value) for value in node]
        return sorted(items) if all(isinstance(item, str) for item in items) else items
    return node


def _apply_automation(client: Any, automation: Any, outcome: Outcome, dry_run: bool) -> None:
    from prefect.events.schemas.automations import AutomationCore

    existing = client.read_automations_by_name(automation.name)
    what = f"automation {automation.name}"
    if not existing:
        outcome.add("created", what)
        if not dry_run:
            client.create_automation(automation)
        return
    keep, *duplicates = existing
    for duplicate in duplicates:
        outcome.add("deleted", f"{what} (a duplicate, id {duplicate.id})")
        if not dry_run:
            client.delete_automation(duplicate.id)
    current = AutomationCore.model_validate(keep.model_dump())
    if _comparable(current) == _comparable(automation):
        outcome.add("unchanged", what)
        return
    outcome.add("updated", what)
    if not dry_run:
        client.update_automation(keep.id, automation)


def _arm_staleness(client: Any) -> None:
    """Start the staleness window now (a completed nightly-retrain run restarts it). The event
    names the deployment as completed runs do; without the deployment nothing is armed yet."""
    from prefect.exceptions import ObjectNotFound

    try:
        deployment = client.read_deployment_by_name(STALE_DEPLOYMENT)
    except ObjectNotFound:
        return
    related = [
        {
            "prefect.resource.id": f"prefect.deployment.{deployment.id}",
            "prefect.resource.role": "deployment",
            "prefect.resource.name": deployment.name,
        }
    ]
    from prefect.events import emit_event

    emit_event(
        event=APPLIED,
        resource={"prefect.resource.id": "mnistnn.automations"},
        related=related,
        payload={},
    )
    events.flush()


__all__ = ["APPLIED", "Outcome", "apply"]
