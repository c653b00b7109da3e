import base64

import dagster as dg
from pydantic import Field

from emonet_assets.defs.design.assets import prompt_shards
from emonet_assets.defs.design.partitions import prompt_shard_partitions
from emonet_assets.defs.execution.executor import gpu_step_tags
from emonet_assets.lib.generation.dataset_qc import reason_counts, run_image_qc
from emonet_assets.lib.generation.shard_generation import contact_sheet, generate_shards
from emonet_assets.lib.shared.tables import Table
from emonet_assets.metadata import markdown_table
from emonet_assets.resources import ImageGeneratorResource, ProfileResource, StorageResource


class GenerationConfig(dg.Config):
    repair_corrupt: bool = Field(
        default=False,
        description="Re-hash the shard's stored images and regenerate those that are missing or corrupt.",
    )


@dg.asset(
    group_name="generation",
    kinds={"pytorch", "parquet"},
    deps=[Table.PROMPT_DESIGN.key, prompt_shards],
    partitions_def=prompt_shard_partitions,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=4),
    pool="gpu",
    op_tags=gpu_step_tags(),
    description="Images for each prompt of a shard (content-addressed PNGs) and the shard's manifest: prompt, "
    "image sha256, seed, model fingerprint, sampler settings, library versions, seconds. Resumes where a "
    "killed run stopped.",
)
def generated_images(
    context: dg.AssetExecutionContext,
    config: GenerationConfig,
    storage: StorageResource,
    generator: ImageGeneratorResource,
) -> dg.MaterializeResult:
    store = storage.store()
    pipe, run = generator.pipeline(), generator.run_settings()
    result = generate_shards(
        store,
        context.partition_keys,
        store.read_table(Table.PROMPT_DESIGN),
        pipe,
        run,
        repair=config.repair_corrupt,
        progress=lambda shard, done, total, rate: context.log.info(
            f"{shard}: {done}/{total} images, {rate:.2f} images/s"
        ),
        on_oom=lambda shard, size, error: context.log.warning(
            f"{shard}: out of GPU memory, retrying at batch size {size}: {error}"
        ),
    )
    if result.truncated:
        context.log.warning(f"{result.truncated} prompts longer than the text encoder's limit were truncated")
    metadata = {
        "shards": dg.MetadataValue.json(list(context.partition_keys)),
        "images_generated": result.generated,
        "images_already_present": result.skipped,
        "images_repaired": result.repaired,
        "prompts_truncated": result.truncated,
        "seconds": round(result.seconds, 2),
        "images_per_second": round(result.generated / result.seconds, 2) if result.seconds else None,
        "final_batch_size": result.batch_size,
        "model": run.model,
        "model_fingerprint": run.fingerprint,
        "device": run.device,
        "dtype": run.dtype,
        "manifest": dg.MetadataValue.path(store.url(f"tables/{Table.GENERATED_IMAGES}")),
    }
    if result.samples:
        sheet = contact_sheet(result.samples)
        keys = context.partition_keys
        path = f"reports/contact_sheets/{keys[0]}..{keys[-1]}.png"
        store.write_bytes(path, sheet)
        metadata["contact_sheet"] = dg.MetadataValue.md(
            f"![sample faces](data:image/png;base64,{base64.b64encode(sheet).decode()})"
        )
        metadata["contact_sheet_path"] = dg.MetadataValue.path(store.url(path))
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    group_name="generation",
    kinds={"opencv", "parquet"},
    deps=[generated_images],
    description="Quality control of every generated image: decodes, requested size, not blank, one face "
    "(when the profile detects faces), and near-duplicates across the whole dataset by perceptual hash. "
    "Failing images are quarantined (passed = false) with their reasons: kept in storage, excluded downstream.",
)
def image_qc(storage: StorageResource, profile: ProfileResource) -> dg.MaterializeResult:
    store = storage.store()
    qc = run_image_qc(store, store.read_table(Table.GENERATED_IMAGES), profile.qc)
    return dg.MaterializeResult(
        metadata={
            **storage.write_table(Table.IMAGE_QC, qc),
            "images": qc.height,
            "passed": int(qc["passed"].sum()),
            "quarantined": int((~qc["passed"]).sum()),
            "quarantine_reasons": dg.MetadataValue.md(markdown_table(reason_counts(qc))),
            "face_detection": profile.qc.face_detection,
        }
    )
