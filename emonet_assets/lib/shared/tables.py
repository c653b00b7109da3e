"""Every table under the storage root's tables/ folder, named once: each is an asset (or one output of a multi-asset)
whose key is the table's folder name, so code reads and writes tables through this registry, never a string.

The registry stays free of Dagster (the storage layer and `emonet status` use it); `Table.key` imports it when asked.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg


class Table(StrEnum):
    TAXONOMY = "taxonomy"
    EMOTION_ROLLUPS = "emotion_rollups"
    PROMPT_DESIGN = "prompt_design"
    DESIGN_CELLS = "design_cells"
    PROMPT_SHARDS = "prompt_shards"
    GENERATED_IMAGES = "generated_images"
    IMAGE_QC = "image_qc"
    ANNOTATION_BATCHES = "annotation_batches"
    ANNOTATION_REJECTS = "annotation_rejects"
    ANNOTATION_EXTRAS = "annotation_extras"
    ANNOTATION_BATCH_LOG = "annotation_batch_log"
    ANNOTATIONS = "annotations"
    EXTERNAL_IMAGES = "external_images"
    AGREEMENT_ITEM_STATS = "int_agreement_item_stats"
    CONSENSUS_LABELS = "consensus_labels"
    EMOTION_AGREEMENT = "emotion_agreement"
    ANNOTATOR_QUALITY = "annotator_quality"
    REANNOTATION_QUEUE = "reannotation_queue"
    LABEL_STUDIO_TASKS = "label_studio_tasks"
    DAWID_SKENE_CONSENSUS = "dawid_skene_consensus"
    SPLITS = "splits"
    IMAGE_EMBEDDINGS = "image_embeddings"
    EMOTION_MODEL = "emotion_model"
    MODEL_EVALUATION = "model_evaluation"
    MODEL_EVALUATION_SUMMARY = "model_evaluation_summary"
    MODEL_EVALUATION_ROLLUPS = "model_evaluation_rollups"
    MODEL_TEST_PREDICTIONS = "model_test_predictions"
    REAL_PHOTO_EVALUATION = "real_photo_evaluation"
    REAL_PHOTO_PER_CLASS = "real_photo_per_class"
    MODEL_REGISTRY = "model_registry"
    MODEL_PREDICTIONS = "model_predictions"
    MODEL_PREDICTION_REJECTS = "model_prediction_rejects"
    MODEL_LEADERBOARD = "model_leaderboard"
    MODEL_LEADERBOARD_EMOTIONS = "model_leaderboard_emotions"
    MODEL_LEADERBOARD_BINARY = "model_leaderboard_binary"
    MODEL_FAIRNESS_GROUPS = "model_fairness_groups"
    MODEL_FAIRNESS_GAPS = "model_fairness_gaps"
    MODEL_FAIRNESS_GATES = "model_fairness_gates"
    FAIRNESS_GROUP_METRICS = "fairness_group_metrics"
    FAIRNESS_DISPARITIES = "fairness_disparities"
    FAIRNESS_GATES = "fairness_gates"
    FAIRNESS_DATA_BALANCE = "fairness_data_balance"
    FAIRNESS_AGREEMENT = "fairness_agreement"
    FAIRNESS_EMOTION_BY_GROUP = "fairness_emotion_by_group"
    ALERTS = "alerts"

    @property
    def key(self) -> dg.AssetKey:
        import dagster as dg

        return dg.AssetKey(self.value)


# The tables a release's rows are assembled from (lib.release.rows), each a declared upstream of the release.
RELEASE_ROW_TABLES = (
    Table.SPLITS,
    Table.GENERATED_IMAGES,
    Table.PROMPT_DESIGN,
    Table.IMAGE_QC,
    Table.CONSENSUS_LABELS,
    Table.ANNOTATIONS,
)

# The fairness report's tables (lib.fairness.fairness.build_fairness_report names them), each stored as its own asset.
FAIRNESS_TABLES = {
    "group_metrics": Table.FAIRNESS_GROUP_METRICS,
    "disparities": Table.FAIRNESS_DISPARITIES,
    "gates": Table.FAIRNESS_GATES,
    "data_balance": Table.FAIRNESS_DATA_BALANCE,
    "agreement": Table.FAIRNESS_AGREEMENT,
    "emotion_by_group": Table.FAIRNESS_EMOTION_BY_GROUP,
}

# The columns every row is traced back through, described wherever a table carries them (the UI shows them in
# each materialization's column schema).
LINEAGE_KEYS = {
    "image_sha256": "lineage key: the image's sha256, its file images/<sha[:2]>/<sha[2:4]>/<sha>.png",
    "image_id": "lineage key: a generated image's sha256; <collection>/<ref> for an external image",
    "prompt_id": "lineage key: the prompt (prompt_design) the image was generated from",
    "batch_id": "lineage key: the annotation batch, the sha256 of the landed file (annotation_batch_log)",
    "model_fingerprint": "lineage key: the trained model (emotion_model), or a predictions file's sha256 prefix",
    "model_key": "lineage key: the registered model version (model_registry), a model_predictions partition",
}
