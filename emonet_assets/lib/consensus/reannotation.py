"""The re-annotation queue as Label Studio tasks: one task per image listing the emotions to rate again.

Each task carries the image's own id (`image_sha256` for generated images, `image_id` plus `collection`
for external ones), so the experts' export resolves back to the same images when it is imported.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

import polars as pl

from emonet_assets.lib.shared.rules import GENERATED
from emonet_assets.lib.shared.storage import Store


def label_studio_tasks(queue: pl.DataFrame, images: pl.DataFrame | None, store: Store) -> list[dict]:
    paths = {} if images is None else dict(images.select("image_sha256", "image_path").iter_rows())
    tasks = []
    for (collection, image_id), items in queue.sort("image_id", "emotion_id").group_by(
        "collection", "image_id", maintain_order=True
    ):
        data = {
            "collection": collection,
            "emotions": items["emotion_id"].to_list(),
            "reasons": items["reason"].to_list(),
        }
        if collection == GENERATED:
            data |= {"image": store.url(paths[image_id]) if image_id in paths else image_id, "image_sha256": image_id}
        else:
            data |= {
                "image": image_id.removeprefix(f"{collection}/"),
                "image_id": image_id.removeprefix(f"{collection}/"),
            }
        data["emotions_text"] = ", ".join(items["emotion"].fill_null(items["emotion_id"]).to_list())
        tasks.append({"data": data})
    return tasks


def label_studio_config(emotion_ids: list[str]) -> str:
    """A labeling config with a 0–7 Number control per emotion, named by emotion id (the importer resolves it)."""
    controls = "\n".join(
        f'  <Number name={quoteattr(e)} toName="image" min="0" max="7" required="false"/>' for e in emotion_ids
    )
    return (
        "<View>\n"
        '  <Image name="image" value="$image"/>\n'
        '  <Header value="Rate each emotion 0 (absent) to 7 (very strong): $emotions_text"/>\n'
        f"{controls}\n"
        "</View>\n"
    )
