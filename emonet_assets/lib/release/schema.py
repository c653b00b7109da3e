"""What a release is: its folder layout and the columns of its rows, with what each column means.

Layout of a release folder (under <root>/releases/<release_id>/):
    data/<split>-<i>-of-<n>.parquet   the rows, `datasets`' sharded naming, so splits map by name
    README.md                          the dataset card (Hugging Face YAML header, datasheet)
    croissant.json                     Croissant 1.0 JSON-LD with its Responsible-AI fields
    manifest.json                      every other file with sha256 and size, the provenance, the release id
"""

from __future__ import annotations

import datasets

RELEASES_DIR = "releases"
LATEST = f"{RELEASES_DIR}/latest.json"
MANIFEST = "manifest.json"
CARD = "README.md"
CROISSANT = "croissant.json"

RATING_FEATURES = {
    "annotator": datasets.Value("string"),
    "emotion_id": datasets.Value("string"),
    "scale": datasets.Value("string"),
    "value": datasets.Value("int32"),
    "batch_id": datasets.Value("string"),
    "source_row": datasets.Value("int64"),
}
CONSENSUS_FEATURES = {
    "emotion_id": datasets.Value("string"),
    "median_rating": datasets.Value("float64"),
    "mean_rating": datasets.Value("float64"),
    "std_rating": datasets.Value("float64"),
    "n_ratings": datasets.Value("int64"),
    "is_confident": datasets.Value("bool"),
}
FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "image_sha256": datasets.Value("string"),
        "split": datasets.Value("string"),
        "prompt_id": datasets.Value("string"),
        "prompt": datasets.Value("string"),
        "emotion_id": datasets.Value("string"),
        "emotion": datasets.Value("string"),
        "emotion_group": datasets.Value("string"),
        "age": datasets.Value("int32"),
        "gender": datasets.Value("string"),
        "ethnicity": datasets.Value("string"),
        "ethnicity_group": datasets.Value("string"),
        "occlusion": datasets.Value("string"),
        "lighting": datasets.Value("string"),
        "pose": datasets.Value("string"),
        "template_id": datasets.Value("string"),
        "intensity_median": datasets.List(datasets.Value("float64")),
        "consensus": datasets.List(CONSENSUS_FEATURES),
        "ratings": datasets.List(RATING_FEATURES),
        "annotation_batch_ids": datasets.List(datasets.Value("string")),
        "qc_passed": datasets.Value("bool"),
        "qc_reasons": datasets.List(datasets.Value("string")),
        "phash": datasets.Value("string"),
        "generation_model": datasets.Value("string"),
        "model_fingerprint": datasets.Value("string"),
        "license": datasets.Value("string"),
        "seed": datasets.Value("int64"),
        "scheduler": datasets.Value("string"),
        "steps": datasets.Value("int32"),
        "guidance": datasets.Value("float64"),
        "width": datasets.Value("int32"),
        "height": datasets.Value("int32"),
        "shard": datasets.Value("string"),
        "cell_id": datasets.Value("string"),
        "design_seed": datasets.Value("int64"),
        "design_version": datasets.Value("string"),
        "taxonomy_version": datasets.Value("string"),
        "source_image_path": datasets.Value("string"),
    }
)
# What each column means, for the card and the Croissant file.
FIELD_DESCRIPTIONS = {
    "image": "The generated face, PNG bytes (decodes to a PIL image).",
    "image_sha256": "sha256 of the PNG bytes; the image's id everywhere in the platform.",
    "split": "train, validation or test; a prompt and its near-duplicates stay in one split.",
    "prompt_id": "Id of the design row the image was generated from.",
    "prompt": "The text prompt given to the generation model.",
    "emotion_id": "The emotion the prompt asked for.",
    "emotion": "Display name of the prompted emotion.",
    "emotion_group": "The annotation guide's group of the prompted emotion.",
    "age": "Age in the prompt (years).",
    "gender": "Gender in the prompt.",
    "ethnicity": "Ethnicity string in the prompt.",
    "ethnicity_group": "FairFace-style analysis group of the ethnicity.",
    "occlusion": "Occlusion requested by the prompt (robustness axis).",
    "lighting": "Lighting requested by the prompt (robustness axis).",
    "pose": "Pose requested by the prompt (robustness axis).",
    "template_id": "Prompt template.",
    "intensity_median": "Median rated intensity (0-7) per emotion, in the order of the card's emotion list.",
    "consensus": "Per emotion: median, mean and std of the rated intensities, their count, and confidence.",
    "ratings": "Every rating of the image: annotator, emotion, scale, value and its source batch and row.",
    "annotation_batch_ids": "The annotation batches (sha256 of the imported files) the ratings come from.",
    "qc_passed": "Passed image quality control (decodes, size, not blank, face found where checked).",
    "qc_reasons": "Why quality control failed, if it did.",
    "phash": "Perceptual hash used to keep near-duplicates in one split.",
    "generation_model": "The generation model (folder or Hugging Face id).",
    "model_fingerprint": "Fingerprint of the generation model's weights and configs.",
    "license": "License of the generation model's weights.",
    "seed": "Generation seed (derived from the prompt id).",
    "scheduler": "Diffusion scheduler.",
    "steps": "Diffusion steps.",
    "guidance": "Classifier-free guidance scale.",
    "width": "Image width in pixels.",
    "height": "Image height in pixels.",
    "shard": "Prompt shard the image was generated in.",
    "cell_id": "Demographic design cell of the prompt.",
    "design_seed": "Seed of the prompt design.",
    "design_version": "Version (hash) of the prompt design.",
    "taxonomy_version": "Version (hash) of the emotion taxonomy.",
    "source_image_path": "Where the image lives under the platform's storage root.",
}
