import json

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from emonet_assets.defs.automation.conditions import refresh_on_new_annotations
from emonet_assets.defs.consensus.project import EXPORTED, dbt_project, prepare_manifest, translator
from emonet_assets.defs.execution.executor import catalog_step_tags
from emonet_assets.lib.consensus.reannotation import label_studio_config, label_studio_tasks
from emonet_assets.lib.shared.tables import Table
from emonet_assets.resources import CatalogResource, ProfileResource, StorageResource


@dbt_assets(
    manifest=prepare_manifest(),
    project=dbt_project,
    dagster_dbt_translator=translator,
    pool="catalog",
    op_tags=catalog_step_tags(),
)
def consensus_models(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    storage: StorageResource,
    catalog: CatalogResource,
    profile: ProfileResource,
):
    """`dbt build` over the annotations: consensus, agreement, annotator quality, re-annotation queue. The one step
    that writes the catalog regularly: it also adds the view of any table whose first write could not (catalog busy)."""
    store = storage.store()
    catalog.add_missing_views(store)
    dbt_vars = {
        **profile.annotation.dbt_vars(),
        "storage_root": store.url("").rstrip("/"),
        "catalog_path": catalog.database,
        "s3_endpoint_url": storage.endpoint_url or "https://s3.amazonaws.com",
    }
    args = ["build", "--vars", json.dumps(dbt_vars), "--target", "local" if store.is_local else "s3"]
    invocation = dbt.cli(args, context=context, raise_on_error=False, target_path=catalog.dbt_target_path())
    events = list(invocation.stream())
    exported = {}
    if invocation.is_successful():
        settings = profile.annotation.duckdb_settings()
        exported = {
            name: storage.copy_table(Table(name), catalog.database, f"main.{name}", settings) for name in EXPORTED
        }
    for event in events:
        name = _asset_name(context, event)
        yield event.with_metadata({**event.metadata, **exported[name]}) if name in exported else event
    if not invocation.is_successful():
        raise dg.Failure(description=f"dbt build failed: {invocation.get_error()}")


def _asset_name(context: dg.AssetExecutionContext, event) -> str | None:
    if isinstance(event, dg.Output):
        return context.asset_key_for_output(event.output_name).path[-1]
    if isinstance(event, dg.AssetMaterialization | dg.MaterializeResult) and event.asset_key:
        return event.asset_key.path[-1]
    return None


@dg.asset(
    group_name="consensus",
    kinds={"json"},
    deps=[Table.REANNOTATION_QUEUE.key, Table.GENERATED_IMAGES.key],
    automation_condition=refresh_on_new_annotations,
    description="The re-annotation queue as a Label Studio import file (one task per image, the emotions to "
    "rate) plus the labeling config; experts' export of it flows back in through the landing zone.",
)
def reannotation_tasks(storage: StorageResource) -> dg.MaterializeResult:
    store = storage.store()
    queue = store.read_table(Table.REANNOTATION_QUEUE)
    images = store.read_table(Table.GENERATED_IMAGES) if store.has_table(Table.GENERATED_IMAGES) else None
    tasks = label_studio_tasks(queue, images, store)
    emotions = sorted(set(queue["emotion_id"].to_list()))
    tasks_path, config_path = "exports/label_studio/reannotation_tasks.json", "exports/label_studio/label_config.xml"
    store.write_bytes(tasks_path, json.dumps(tasks, indent=1).encode())
    store.write_bytes(config_path, label_studio_config(emotions).encode())
    return dg.MaterializeResult(
        metadata={
            "tasks": len(tasks),
            "items": queue.height,
            "by_reason": dg.MetadataValue.json(dict(queue.group_by("reason").len().rows())),
            "tasks_file": dg.MetadataValue.path(store.url(tasks_path)),
            "label_config": dg.MetadataValue.path(store.url(config_path)),
        }
    )
