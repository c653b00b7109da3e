import dagster as dg

from emonet_assets.defs.taxonomy.assets import read_taxonomy
from emonet_assets.lib.annotation.label_studio import image_url_maker, plan_push, push
from emonet_assets.lib.shared.tables import Table
from emonet_assets.metadata import markdown_table
from emonet_assets.resources import LabelStudioResource, ProfileResource, StorageResource


@dg.asset(
    key=Table.LABEL_STUDIO_TASKS.key,
    group_name="annotation",
    kinds={"labelstudio", "parquet"},
    deps=[
        Table.TAXONOMY.key,
        Table.PROMPT_DESIGN.key,
        dg.AssetDep(Table.GENERATED_IMAGES.key, partition_mapping=dg.AllPartitionMapping()),
        Table.IMAGE_QC.key,
        Table.ANNOTATIONS.key,
        Table.REANNOTATION_QUEUE.key,
    ],
    description="Pushes to Label Studio the generated images that still need raters (up to the profile's "
    "ratings_per_image) and the re-annotation queue, one project per collection, round and kind; a task already "
    "there (by its image) is never pushed again. The table: every platform task the projects hold, with its id.",
)
def label_studio_tasks(
    storage: StorageResource, profile: ProfileResource, label_studio: LabelStudioResource
) -> dg.MaterializeResult:
    store, settings = storage.store(), profile.annotation.label_studio
    image_url = image_url_maker(store, settings.local_files_root, settings.url_expiry_hours * 3600)
    plan = plan_push(
        store, read_taxonomy(storage), settings.round, settings.layout, settings.ratings_per_image, image_url
    )
    local_root = f"{store.root}/images" if store.is_local else None
    tasks, pushed = push(label_studio.client(), label_studio.url, plan, local_root)
    per_project = tasks.group_by("project_id", "project").len("tasks").sort("project_id")
    return dg.MaterializeResult(
        metadata={
            **storage.write_table(Table.LABEL_STUDIO_TASKS, tasks),
            "pushed_now": sum(pushed.values()),
            "label_studio": dg.MetadataValue.url(label_studio.url),
            "projects": dg.MetadataValue.md(
                markdown_table(per_project.with_columns(pushed_now=per_project["project"].replace_strict(pushed)))
            ),
        }
    )
