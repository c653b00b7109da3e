"""The release's dataset card (README.md with the Hugging Face YAML header) and its Croissant 1.0 JSON-LD file,
both written from the data: the release rows, the agreement, evaluation and fairness tables.

The card's text lives in data/templates/dataset_card.md (Jinja2, rendered by huggingface_hub's DatasetCard), the
datasheet prose the card and the Croissant file share in data/templates/datasheet.yaml.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import datasets
import jinja2
import polars as pl
import yaml
from huggingface_hub import DatasetCard, DatasetCardData

from emonet_assets.lib.annotation.landing import describe_rating_sources
from emonet_assets.lib.fairness.rendering import render_markdown
from emonet_assets.lib.release.schema import FEATURES, FIELD_DESCRIPTIONS
from emonet_assets.lib.shared.lineage import DATA_VERSION_MEANS, data_version
from emonet_assets.lib.shared.package_data import package_path
from emonet_assets.lib.shared.rules import SPLITS

TEMPLATES = package_path("data", "templates")
CARD_TEMPLATE = TEMPLATES / "dataset_card.md"
DATASHEET = TEMPLATES / "datasheet.yaml"
CROISSANT_CONTEXT = TEMPLATES / "croissant_context.json"
CROISSANT_CONFORMS_TO = "http://mlcommons.org/croissant/1.0"
TAGS = ["emotion-recognition", "facial-expression", "synthetic", "fairness", "croissant"]
# The Hugging Face `annotations_creators` value and a tag for each kind of rater (landing.RATERS).
ANNOTATION_CREATORS = {"expert": "expert-generated", "crowd": "crowdsourced", "simulated": "machine-generated"}
RATER_TAGS = {"expert": "expert-annotated", "crowd": "crowd-annotated", "simulated": "simulated-annotations"}
FAIRNESS_REPORT = "reports/fairness/report.html"
CITATION = (
    "@inproceedings{schuhmann2025emonetface, title={EmoNet-Face: An Expert-Annotated Benchmark for Synthetic "
    "Emotion Recognition}, author={Schuhmann, Christoph and others}, booktitle={NeurIPS}, year={2025}, "
    "eprint={2505.20033}, archivePrefix={arXiv}}"
)
SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
DEMOGRAPHIC_ATTRIBUTES = ("age", "gender", "ethnicity_group")


@dataclass(frozen=True)
class CardInputs:
    """What the card and the Croissant file say, all of it read from the platform's tables."""

    name: str
    pretty_name: str
    version: str
    license: str
    rows: pl.DataFrame  # one row per released image: lib.release.rows.SUMMARY_COLUMNS
    annotators: int  # distinct annotators among the released images' ratings
    batches: int  # distinct annotation batches among them
    emotions: pl.DataFrame  # emotion_id, emotion in taxonomy order
    data_files: dict[str, tuple[str, int]]  # release path -> (sha256, bytes), the Parquet shards
    agreement: pl.DataFrame  # emotion_agreement of the generated collection, intensity scale
    evaluation: pl.DataFrame  # model_evaluation (per emotion)
    evaluation_summary: pl.DataFrame  # model_evaluation_summary (per predictor)
    fairness: dict[str, pl.DataFrame]  # fairness_* tables by name (group_metrics, disparities, gates)
    provenance: dict
    rating_sources: list[dict]  # annotation_batches.rating_sources rows over the released images' ratings
    fairness_settings: dict = dataclasses.field(default_factory=dict)  # min_group_size, gate_severity
    leaderboard: pl.DataFrame | None = None  # model_leaderboard rows of the emotion rollup


def _rater_kinds(inputs: CardInputs) -> list[str]:
    return [source["raters"] for source in inputs.rating_sources]


def tags(inputs: CardInputs) -> list[str]:
    return TAGS + [RATER_TAGS[kind] for kind in _rater_kinds(inputs) if kind in RATER_TAGS]


def ratings_statement(inputs: CardInputs) -> str:
    """Who rated, said where a reader looks first: simulated ratings are never to pass for people's."""
    sentence = f"Ratings: {describe_rating_sources(inputs.rating_sources)}."
    if "simulated" in _rater_kinds(inputs):
        sentence += (
            " The ratings are simulated: this release exercises the pipeline, and nothing in it measures how people"
            " perceive these faces."
        )
    return sentence


def size_category(n: int) -> str:
    return next((label for limit, label in SIZE_CATEGORIES if n < limit), "n>1M")


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def _with_ci(value, low, high) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.3f} [{_cell(low)}, {_cell(high)}]"


def _split_shards(inputs: CardInputs) -> dict[str, list[tuple[str, int]]]:
    return {
        split: sorted((p, size) for p, (_, size) in inputs.data_files.items() if p.startswith(f"data/{split}-"))
        for split in SPLITS
    }


def _demographics(rows: pl.DataFrame) -> list[list[str]]:
    table = []
    for attribute in DEMOGRAPHIC_ATTRIBUTES:
        counts = rows.group_by(pl.col(attribute).cast(pl.String).alias("group"), "split").len()
        for group in sorted(counts["group"].unique().to_list(), key=lambda g: (len(g), g) if g.isdigit() else (0, g)):
            per = dict(counts.filter(pl.col("group") == group).select("split", "len").iter_rows())
            table.append([attribute, _cell(group), *(str(per.get(s, 0)) for s in SPLITS), str(sum(per.values()))])
    return table


def _gender_by_ethnicity(rows: pl.DataFrame) -> tuple[list[str], list[list[str]]]:
    groups = sorted(rows["ethnicity_group"].unique().to_list())
    counts = rows.group_by("gender", "ethnicity_group").len()
    table = []
    for gender in sorted(rows["gender"].unique().to_list()):
        per = dict(counts.filter(pl.col("gender") == gender).select("ethnicity_group", "len").iter_rows())
        table.append([_cell(gender), *(str(per.get(g, 0)) for g in groups)])
    return ["gender", *(_cell(g) for g in groups)], table


def _emotions(inputs: CardInputs) -> list[list[str]]:
    agreement = {r["emotion_id"]: r for r in inputs.agreement.iter_rows(named=True)}
    evaluation = {r["emotion_id"]: r for r in inputs.evaluation.iter_rows(named=True)}
    table = []
    for i, (emotion_id, emotion) in enumerate(inputs.emotions.select("emotion_id", "emotion").iter_rows()):
        a, m = agreement.get(emotion_id, {}), evaluation.get(emotion_id, {})
        table.append(
            [
                str(i),
                _cell(emotion),
                f"`{emotion_id}`",
                _with_ci(a.get("alpha_interval"), a.get("alpha_interval_ci_low"), a.get("alpha_interval_ci_high")),
                _cell(a.get("kappa_quadratic_mean")),
                _cell(a.get("human_ceiling_spearman")),
                _cell(m.get("spearman")),
                _cell(m.get("model_to_human_ratio")),
            ]
        )
    return table


def _models(summary: pl.DataFrame) -> list[list[str]]:
    return [
        [
            _cell(r["predictor"]) + (f" `{r['model_fingerprint']}`" if r["predictor"] == "model" else ""),
            str(r["n_images"]),
            _with_ci(r["mean_spearman"], r["mean_spearman_ci_low"], r["mean_spearman_ci_high"]),
            _cell(r["mean_kappa_quadratic"]),
            _cell(r["mean_presence_f1"]),
            _cell(r["mean_mae"]),
            _cell(r["human_ceiling_spearman"]),
        ]
        for r in summary.iter_rows(named=True)
    ]


def _leaderboard(board: pl.DataFrame | None) -> list[list[str]]:
    """Every registered model on the benchmark's evaluation images, beside the human ceiling and the random
    baseline: what the card's leaderboard table shows."""
    if board is None:
        return []

    def versus(r: dict) -> str:
        if r["kind"] == "human" or r["diff_vs_human"] is None or math.isnan(r["diff_vs_human"]):
            return "–"
        return f"{r['diff_vs_human']:+.3f} [{r['diff_vs_human_ci_low']:.3f}, {r['diff_vs_human_ci_high']:.3f}]"

    return [
        [
            _cell(r["collection"]),
            str(r["rank"]) if r["rank"] is not None else "–",
            f"`{r['model_key']}`",
            _cell(r["kind"]),
            _with_ci(r["mean_spearman"], r["mean_spearman_ci_low"], r["mean_spearman_ci_high"]),
            versus(r),
            "–"
            if r["kind"] == "human"
            else f"<{1 / r['resamples']:.3g}"
            if r["p_vs_human"] == 0
            else _cell(r["p_vs_human"]),
            f"{r['coverage']:.0%}",
        ]
        for r in board.iter_rows(named=True)
    ]


def _generation(rows: pl.DataFrame) -> list[list[str]]:
    models = (
        rows.group_by("generation_model", "model_fingerprint", "license")
        .agg(pl.len(), pl.col("scheduler", "steps", "width", "height").first())
        .sort("generation_model", "model_fingerprint")
    )
    return [
        [
            _cell(r["generation_model"]),
            f"`{r['model_fingerprint']}`",
            _cell(r["license"]),
            str(r["len"]),
            _cell(r["scheduler"]),
            str(r["steps"]),
            f"{r['width']}x{r['height']}",
        ]
        for r in models.iter_rows(named=True)
    ]


def _type_name(feature) -> str:
    if isinstance(feature, datasets.Image):
        return "image"
    if isinstance(feature, datasets.Value):
        return feature.dtype
    if isinstance(feature, datasets.List):
        inner = feature.feature
        return "list<struct>" if isinstance(inner, dict) else f"list<{_type_name(inner)}>"
    return type(feature).__name__


def _provenance_rows(provenance: dict) -> list[list[str]]:
    rows = [["taxonomy", ", ".join(f"`{v}`" for v in provenance["taxonomy_versions"])]]
    rows.append(["prompt design", ", ".join(f"`{v}`" for v in provenance["design_versions"])])
    rows += [[name, f"`{fp}`"] for name, fp in provenance["model_fingerprints"].items()]
    rows += [[name, v] for name, v in provenance["library_versions"].items()]
    return rows


def _numbers(inputs: CardInputs) -> dict:
    rows = inputs.rows
    counts = {s: rows.filter(pl.col("split") == s).height for s in SPLITS}
    models = sorted({f"{m} ({lic})" for m, lic in rows.select("generation_model", "license").iter_rows()})
    return {
        "n_images": rows.height,
        "split_counts": ", ".join(f"{counts[s]} {s}" for s in SPLITS),
        "n_emotions": inputs.emotions.height,
        "ratings_per_image": f"{rows['mean_n_ratings'].mean() or 0:.1f}",
        "n_cells": rows.select(DEMOGRAPHIC_ATTRIBUTES).unique().height,
        "n_ethnicity_groups": rows["ethnicity_group"].n_unique(),
        "n_annotators": inputs.annotators,
        "n_batches": inputs.batches,
        "raters": describe_rating_sources(inputs.rating_sources),
        "design_versions": ", ".join(inputs.provenance["design_versions"]),
        "generation_models": ", ".join(models),
        "license": inputs.license,
    }


def datasheet(inputs: CardInputs) -> dict[str, str]:
    """The datasheet's sections, rendered over the release's numbers."""
    numbers = _numbers(inputs)
    texts = yaml.safe_load(DATASHEET.read_text(encoding="utf-8"))
    return {key: jinja2.Template(text).render(**numbers) for key, text in texts.items()}


def card_data(inputs: CardInputs) -> DatasetCardData:
    shards = _split_shards(inputs)
    split_info = [
        {
            "name": s,
            "num_bytes": sum(b for _, b in shards[s]),
            "num_examples": inputs.rows.filter(pl.col("split") == s).height,
        }
        for s in SPLITS
    ]
    total = sum(size for _, size in inputs.data_files.values())
    return DatasetCardData(
        license=inputs.license,
        annotations_creators=sorted({ANNOTATION_CREATORS.get(kind, "other") for kind in _rater_kinds(inputs)})
        or ["no-annotation"],
        language_creators=["machine-generated"],
        language=["en"],
        multilinguality="monolingual",
        size_categories=[size_category(inputs.rows.height)],
        source_datasets=["original"],
        task_categories=["image-classification"],
        task_ids=["multi-label-image-classification"],
        pretty_name=inputs.pretty_name,
        tags=tags(inputs),
        configs=[{"config_name": "default", "data_files": [{"split": s, "path": f"data/{s}-*"} for s in SPLITS]}],
        dataset_info={
            "features": FEATURES._to_yaml_list(),
            "splits": split_info,
            "download_size": total,
            "dataset_size": total,
        },
    )


def render_card(inputs: CardInputs) -> str:
    shards = _split_shards(inputs)
    columns, by_ethnicity = _gender_by_ethnicity(inputs.rows)
    fingerprints = inputs.provenance["model_fingerprints"]
    versions = {
        "model": fingerprints.get("emotion_model"),
        "data": data_version(inputs.rows),
        "taxonomy": ", ".join(inputs.provenance["taxonomy_versions"]),
    }
    card = DatasetCard.from_template(
        card_data(inputs),
        template_path=str(CARD_TEMPLATE),
        pretty_name=inputs.pretty_name,
        version=inputs.version,
        data_version=versions["data"],
        data_version_means=DATA_VERSION_MEANS,
        ratings=ratings_statement(inputs),
        fairness_report=FAIRNESS_REPORT,
        license=inputs.license,
        n_images=inputs.rows.height,
        n_emotions=inputs.emotions.height,
        n_shards=len(inputs.data_files),
        data_size=_bytes(sum(size for _, size in inputs.data_files.values())),
        splits=[
            [
                s,
                str(inputs.rows.filter(pl.col("split") == s).height),
                str(len(shards[s])),
                _bytes(sum(b for _, b in shards[s])),
            ]
            for s in SPLITS
        ],
        demographics=_demographics(inputs.rows),
        gender_by_ethnicity_columns=columns,
        gender_by_ethnicity=by_ethnicity,
        emotions=_emotions(inputs),
        models=_models(inputs.evaluation_summary),
        leaderboard=_leaderboard(inputs.leaderboard),
        fairness=render_markdown(inputs.fairness, versions, [], **inputs.fairness_settings),
        generation=_generation(inputs.rows),
        fields=[[f"`{name}`", _type_name(feature), FIELD_DESCRIPTIONS[name]] for name, feature in FEATURES.items()],
        datasheet=datasheet(inputs),
        provenance=[["data", f"`{versions['data']}` ({DATA_VERSION_MEANS})"], *_provenance_rows(inputs.provenance)],
    )
    return str(card)


_CROISSANT_TYPES = {
    "string": "sc:Text",
    "bool": "sc:Boolean",
    "int32": "sc:Integer",
    "int64": "sc:Integer",
    "float64": "sc:Float",
}


def _field(record_set: str, file_set: str, name: str, feature) -> dict:
    source = {"fileSet": {"@id": file_set}, "extract": {"column": name}}
    field = {
        "@type": "cr:Field",
        "@id": f"{record_set}/{name}",
        "name": name,
        "description": FIELD_DESCRIPTIONS[name],
    }
    if isinstance(feature, datasets.Image):
        return {**field, "dataType": "sc:ImageObject", "source": {**source, "transform": {"jsonPath": "bytes"}}}
    if isinstance(feature, datasets.List):
        inner = feature.feature
        if isinstance(inner, dict):
            sub = [
                {
                    "@type": "cr:Field",
                    "@id": f"{record_set}/{name}/{key}",
                    "name": key,
                    "dataType": _CROISSANT_TYPES[value.dtype],
                    "source": {**source, "transform": {"jsonPath": key}},
                }
                for key, value in inner.items()
            ]
            return {**field, "repeated": True, "subField": sub}
        return {**field, "dataType": _CROISSANT_TYPES[inner.dtype], "repeated": True, "source": source}
    return {**field, "dataType": _CROISSANT_TYPES[feature.dtype], "source": source}


def croissant(inputs: CardInputs) -> dict:
    """Croissant 1.0 metadata: a FileObject (with sha256) per Parquet shard, a FileSet and a RecordSet per split,
    and the Responsible-AI fields from the datasheet."""
    sheet = datasheet(inputs)
    numbers = _numbers(inputs)
    files = [
        {
            "@type": "cr:FileObject",
            "@id": path,
            "name": path,
            "contentUrl": path,
            "encodingFormat": "application/x-parquet",
            "contentSize": f"{size} B",
            "sha256": sha,
        }
        for path, (sha, size) in sorted(inputs.data_files.items())
    ]
    file_sets = [
        {
            "@type": "cr:FileSet",
            "@id": f"parquet-{split}",
            "name": f"parquet-{split}",
            "description": f"The {split} split's Parquet shards.",
            "encodingFormat": "application/x-parquet",
            "includes": f"data/{split}-*.parquet",
        }
        for split in SPLITS
    ]
    record_sets = [
        {
            "@type": "cr:RecordSet",
            "@id": split,
            "name": split,
            "description": f"One record per image of the {split} split.",
            "key": {"@id": f"{split}/image_sha256"},
            "field": [_field(split, f"parquet-{split}", name, feature) for name, feature in FEATURES.items()],
        }
        for split in SPLITS
    ]
    return {
        "@context": json.loads(CROISSANT_CONTEXT.read_text(encoding="utf-8")),
        "@type": "sc:Dataset",
        "name": inputs.name,
        "alternateName": inputs.pretty_name,
        "description": sheet["motivation"],
        "conformsTo": CROISSANT_CONFORMS_TO,
        "license": inputs.license,
        "version": inputs.version,
        "citeAs": CITATION,
        "keywords": tags(inputs),
        "isLiveDataset": False,
        "distribution": files + file_sets,
        "recordSet": record_sets,
        "rai:dataCollection": sheet["collection"],
        "rai:dataCollectionType": ["Synthetic data (text-to-image generation)"]
        + (["Manual Human Curator"] if set(_rater_kinds(inputs)) - {"simulated"} else [])
        + (["Software Collection"] if "simulated" in _rater_kinds(inputs) else []),
        "rai:dataPreprocessingProtocol": [sheet["preprocessing"]],
        "rai:dataAnnotationProtocol": (
            f"{ratings_statement(inputs)} Each rater rates every image on a 0-7 intensity scale for all "
            f"{numbers['n_emotions']} emotions; consensus is the median per image and emotion."
        ),
        "rai:annotationsPerItem": f"{numbers['ratings_per_image']} ratings per image and emotion on average",
        "rai:annotatorDemographics": (
            "None: no person rated these images (the ratings are simulated)."
            if set(_rater_kinds(inputs)) == {"simulated"}
            else "Not recorded: annotators appear under pseudonymous ids only."
        ),
        "rai:dataBiases": [sheet["biases"]],
        "rai:dataLimitations": [sheet["limitations"]],
        "rai:personalSensitiveInformation": [sheet["sensitive_information"]],
        "rai:dataUseCases": [sheet["uses"]],
        "rai:dataSocialImpact": sheet["uses"],
        "rai:dataReleaseMaintenancePlan": [sheet["maintenance"]],
    }
