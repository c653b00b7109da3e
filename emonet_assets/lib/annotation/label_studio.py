"""Label Studio as the annotation tool: one project per collection, round and kind of task, tasks pushed once, and
the annotations submitted since the last pull landed as one Label Studio export per project and pull.

The landing zone is the pull's cursor: a pull's file is named after the project and the last annotation id it holds,
so the next pull asks only for later annotations whoever ran the last one (the daemon's sensor or the CLI), and a
pull that failed half-way landed nothing. The import path (landing sensor, rejects, reconciliation) is the one every
annotation file takes; a rating that reaches it twice is rejected there as a duplicate of the earlier batch.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

import polars as pl

from emonet_assets.lib.annotation.landing import BatchDeclaration, land_file, list_landing
from emonet_assets.lib.shared.rules import GENERATED
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.shared.tables import Table
from emonet_assets.lib.taxonomy.taxonomy import Taxonomy

TOKEN_ENV = "EMONET_LABEL_STUDIO_TOKEN"
"""The API token (Label Studio: Account & Settings, legacy token) lives in the environment only, never a profile."""

KINDS = ("ratings", "reannotation")
LAYOUTS = ("intensity", "binary")
BINARY_CHOICES = ("present", "absent")
_PULL_FILE = re.compile(r"label-studio-project-(?P<project>\d+)-annotations-(?P<first>\d+)-(?P<last>\d+)\.json$")

PUSHED_SCHEMA = {
    "project_id": pl.Int64,
    "project": pl.String,
    "collection": pl.String,
    "round": pl.String,
    "kind": pl.String,
    "layout": pl.String,
    "task_key": pl.String,
    "image_id": pl.String,
    "task_id": pl.Int64,
}


class LabelStudioError(RuntimeError):
    """Label Studio cannot be used as configured; the message names the setting, project or server."""


class LabelStudioUnavailable(LabelStudioError):
    """The server did not answer: nothing was pushed or pulled, and the next attempt starts from the same place."""


# ---- labeling configs ------------------------------------------------------------------------------------------


def intensity_config(taxonomy: Taxonomy, emotion_ids: Iterable[str] | None = None) -> str:
    """A 0–7 Number control per emotion (named by emotion id, which the importer resolves), under a header per
    taxonomy group in the taxonomy's order; `emotion_ids` limits it to those emotions (a re-annotation round)."""
    wanted = None if emotion_ids is None else set(emotion_ids)
    lines = [
        "<View>",
        '  <Image name="image" value="$image" maxWidth="512px"/>',
        '  <Header value="Rate each emotion 0 (absent) to 7 (very strong). $instructions"/>',
    ]
    for group in taxonomy.groups:
        members = [e for e in taxonomy.emotions if e.group == group.id and (wanted is None or e.id in wanted)]
        if not members:
            continue
        lines.append('  <View style="display: grid; grid-template-columns: 16em 8em; gap: 2px 8px">')
        lines.append(f'    <Header value={quoteattr(group.name)} size="5"/><View/>')
        for e in members:
            lines.append(f'    <Header value={quoteattr(e.name)} size="6"/>')
            lines.append(f'    <Number name={quoteattr(e.id)} toName="image" min="0" max="7" required="false"/>')
        lines.append("  </View>")
    lines.append("</View>")
    return "\n".join(lines) + "\n"


def binary_config() -> str:
    """The release's binary layout: present or absent for the emotion the image was prompted with and for one
    contrastive emotion; the pull names each answer by the emotion its task carried."""
    choices = "".join(f'<Choice value="{c}"/>' for c in BINARY_CHOICES)
    return (
        "<View>\n"
        '  <Image name="image" value="$image" maxWidth="512px"/>\n'
        '  <Header value="Is $prompted_name present?"/>\n'
        f'  <Choices name="prompted" toName="image" choice="single" required="true">{choices}</Choices>\n'
        '  <Header value="Is $contrastive_name present?"/>\n'
        f'  <Choices name="contrastive" toName="image" choice="single" required="true">{choices}</Choices>\n'
        "</View>\n"
    )


def same_config(a: str, b: str) -> bool:
    """Label Studio stores the config as given; whitespace between tags is no edit."""
    return _squeeze(a) == _squeeze(b)


def _squeeze(xml: str) -> str:
    return re.sub(r">\s+<", "><", xml.strip())


# ---- projects --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectSpec:
    collection: str
    round: str
    kind: str
    layout: str
    label_config: str
    max_annotations: int = 1

    @property
    def title(self) -> str:
        """Label Studio titles are 3 to 50 characters; the title is how the platform finds its project again."""
        return f"emonet {self.collection} {self.round} {self.kind}"[:50]

    @property
    def description(self) -> str:
        return (
            f"EmoNet-Face {self.kind} of collection {self.collection!r}, round {self.round!r}, {self.layout} layout. "
            "Made by the platform (emonet annotate push): edit the labeling config there, not here."
        )


@dataclass
class PushPlan:
    """Per project title, the tasks to import (each with `data.emonet_key`) and what is already there."""

    specs: dict[str, ProjectSpec] = field(default_factory=dict)
    tasks: dict[str, list[dict]] = field(default_factory=dict)

    def add(self, spec: ProjectSpec, tasks: list[dict]) -> None:
        if tasks:
            self.specs[spec.title] = spec
            self.tasks.setdefault(spec.title, []).extend(tasks)


def contrastive_emotion(image_id: str, prompted: str, taxonomy: Taxonomy) -> str:
    """An emotion of another taxonomy group, picked by the image id: stable across runs and machines."""
    group = next(e.group for e in taxonomy.emotions if e.id == prompted)
    others = sorted(e.id for e in taxonomy.emotions if e.group != group)
    return others[int(hashlib.sha256(image_id.encode()).hexdigest(), 16) % len(others)]


def rating_candidates(
    manifest: pl.DataFrame, qc: pl.DataFrame, ratings: pl.DataFrame | None, ratings_per_image: int
) -> pl.DataFrame:
    """Generated images that passed QC and have fewer than `ratings_per_image` expert annotators (a simulated
    panel's ratings are no expert's), with how many more they need: (image_sha256, image_path, prompt_id, needed)."""
    passed = qc.filter(pl.col("passed")).select("image_sha256").unique()
    images = (
        manifest.select("image_sha256", "image_path", "prompt_id")
        .unique("image_sha256")
        .join(passed, on="image_sha256")
    )
    if ratings is None or ratings.is_empty():
        counts = pl.DataFrame(schema={"image_sha256": pl.String, "raters": pl.UInt32})
    else:
        counts = (
            ratings.filter((pl.col("collection") == GENERATED) & (pl.col("raters") == "expert"))
            .group_by(image_sha256="image_id")
            .agg(raters=pl.col("annotator").n_unique())
        )
    joined = images.join(counts, on="image_sha256", how="left").with_columns(pl.col("raters").fill_null(0))
    return (
        joined.with_columns(needed=ratings_per_image - pl.col("raters").cast(pl.Int64))
        .filter(pl.col("needed") > 0)
        .sort("image_sha256")
        .select("image_sha256", "image_path", "prompt_id", "needed")
    )


def rating_tasks(
    candidates: pl.DataFrame,
    layout: str,
    image_url: Callable[[str], str],
    taxonomy: Taxonomy,
    prompted: dict[str, str] | None = None,
) -> list[dict]:
    """One task per image; binary tasks name the prompted emotion (`prompted`: prompt id -> emotion id) and a
    contrastive one."""
    names = {e.id: e.name for e in taxonomy.emotions}
    tasks = []
    for sha, path, prompt_id, _ in candidates.iter_rows():
        data = {
            "image": image_url(path),
            "image_sha256": sha,
            "collection": GENERATED,
            "emonet_key": f"{GENERATED}/{sha}",
            "instructions": "",
        }
        if layout == "binary":
            emotion = (prompted or {}).get(prompt_id)
            if emotion is None:
                continue
            contrast = contrastive_emotion(sha, emotion, taxonomy)
            data |= {
                "prompted": emotion,
                "prompted_name": names[emotion],
                "contrastive": contrast,
                "contrastive_name": names[contrast],
            }
        tasks.append({"data": data})
    return tasks


def reannotation_tasks(
    queue: pl.DataFrame, paths: dict[str, str], image_url: Callable[[str], str]
) -> dict[str, list[dict]]:
    """The re-annotation queue as tasks per collection: the image (generated images through `image_url`, external
    ones by their id, which the import resolves within the collection) and the emotions to rate again."""
    out: dict[str, list[dict]] = {}
    for (collection, image_id), items in queue.sort("image_id", "emotion_id").group_by(
        "collection", "image_id", maintain_order=True
    ):
        names = items["emotion"].fill_null(items["emotion_id"]).to_list()
        data = {
            "collection": collection,
            "emonet_key": f"{collection}/{image_id}",
            "emotions": items["emotion_id"].to_list(),
        }
        data["instructions"] = "Rate again: " + ", ".join(names)
        if collection == GENERATED:
            data |= {"image": image_url(paths[image_id]) if image_id in paths else image_id, "image_sha256": image_id}
        else:
            external = image_id.removeprefix(f"{collection}/")
            data |= {"image": external, "image_id": external}
        out.setdefault(collection, []).append({"data": data})
    return out


def local_files_url(rel_path: str) -> str:
    """Label Studio's local-files serving: the path relative to its LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT."""
    from urllib.parse import quote

    return f"/data/local-files/?d={quote(rel_path)}"


def image_url_maker(store: Store, local_files_root: str | None, expires_s: int) -> Callable[[str], str]:
    """How Label Studio reaches an image of the storage root: its local-files serving for a local root (the path
    relative to the server's document root, by default the storage root itself), a pre-signed URL for S3."""
    if not store.is_local:
        return lambda rel: store.signed_url(rel, expires_s)
    document_root = os.path.abspath(local_files_root or store.root)
    root = os.path.abspath(store.root)
    if os.path.commonpath([document_root, root]) != document_root:
        raise LabelStudioError(
            f"annotation.label_studio.local_files_root {document_root} does not contain the storage root {root}: "
            "Label Studio could not serve its images"
        )
    prefix = os.path.relpath(root, document_root)
    return lambda rel: local_files_url(posixpath.normpath(posixpath.join(prefix, rel)))


def plan_push(
    store: Store, taxonomy: Taxonomy, round_: str, layout: str, ratings_per_image: int, image_url: Callable[[str], str]
) -> PushPlan:
    """What the platform wants in Label Studio now: a ratings project of the generated images that still need
    raters, and a re-annotation project per collection of the queue."""
    plan = PushPlan()
    manifest = store.read_table(Table.GENERATED_IMAGES) if store.has_table(Table.GENERATED_IMAGES) else None
    if manifest is not None and store.has_table(Table.IMAGE_QC):
        ratings = store.read_table(Table.ANNOTATIONS) if store.has_table(Table.ANNOTATIONS) else None
        candidates = rating_candidates(manifest, store.read_table(Table.IMAGE_QC), ratings, ratings_per_image)
        prompted = None
        if layout == "binary":
            design = store.read_table(Table.PROMPT_DESIGN).select("prompt_id", "emotion_id")
            prompted = dict(design.iter_rows())
        config = intensity_config(taxonomy) if layout == "intensity" else binary_config()
        spec = ProjectSpec(GENERATED, round_, "ratings", layout, config, ratings_per_image)
        plan.add(spec, rating_tasks(candidates, layout, image_url, taxonomy, prompted))
    if store.has_table(Table.REANNOTATION_QUEUE):
        paths = {} if manifest is None else dict(manifest.select("image_sha256", "image_path").iter_rows())
        for collection, tasks in reannotation_tasks(
            store.read_table(Table.REANNOTATION_QUEUE), paths, image_url
        ).items():
            spec = ProjectSpec(collection, round_, "reannotation", "intensity", intensity_config(taxonomy))
            plan.add(spec, tasks)
    return plan


# ---- the server ------------------------------------------------------------------------------------------------


def _unavailable(url: str, exc: Exception) -> LabelStudioUnavailable:
    return LabelStudioUnavailable(f"Label Studio at {url} did not answer ({type(exc).__name__}: {exc})")


def call(url: str, what: Callable[[], object]):
    """Run an SDK call, turning a dead server into LabelStudioUnavailable and a refused token into a message
    naming the environment variable."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    try:
        return what()
    except (httpx.TransportError, ConnectionError) as exc:
        raise _unavailable(url, exc) from exc
    except ApiError as exc:
        if exc.status_code in (401, 403):
            raise LabelStudioError(
                f"Label Studio at {url} refused the API token in {TOKEN_ENV} (HTTP {exc.status_code}): set it to the "
                "token of a Label Studio user (Account & Settings)"
            ) from exc
        if exc.status_code is not None and exc.status_code >= 500:
            raise _unavailable(url, exc) from exc
        raise LabelStudioError(f"Label Studio at {url}: HTTP {exc.status_code}: {exc.body}") from exc


@dataclass(frozen=True)
class Project:
    id: int
    title: str
    label_config: str


def platform_projects(client, url: str) -> dict[str, Project]:
    """The server's projects the platform made, by title."""
    projects = call(url, lambda: list(client.projects.list(page_size=1000)))
    return {
        p.title: Project(p.id, p.title, p.label_config or "") for p in projects if (p.title or "").startswith("emonet ")
    }


def edited_projects(projects: dict[str, Project], specs: dict[str, ProjectSpec]) -> list[str]:
    """The projects whose labeling config is no longer the platform's, each named with its id."""
    return [
        f"{title!r} (id {projects[title].id})"
        for title, spec in specs.items()
        if title in projects and not same_config(projects[title].label_config, spec.label_config)
    ]


def ensure_project(
    client, url: str, spec: ProjectSpec, existing: dict[str, Project], local_root: str | None
) -> Project:
    """The project for `spec`, created with its config (and, for a local storage root, a local-files storage over
    it, which Label Studio requires before it serves a file) if the server has none."""
    if spec.title in existing:
        return existing[spec.title]
    made = call(
        url,
        lambda: client.projects.create(
            title=spec.title,
            description=spec.description,
            label_config=spec.label_config,
            maximum_annotations=spec.max_annotations,
        ),
    )
    if local_root:
        call(
            url,
            lambda: client.import_storage.local.create(
                project=made.id, path=local_root, title="emonet storage root", use_blob_urls=False
            ),
        )
    project = Project(made.id, spec.title, spec.label_config)
    existing[spec.title] = project
    return project


def project_task_keys(client, url: str, project_id: int) -> dict[str, int]:
    """`data.emonet_key` -> task id of the tasks already in the project: the push's record of what is there."""
    tasks = call(url, lambda: list(client.tasks.list(project=project_id, fields="task_only", page_size=1000)))
    return {t.data["emonet_key"]: t.id for t in tasks if isinstance(t.data, dict) and "emonet_key" in t.data}


def push(client, url: str, plan: PushPlan, local_root: str | None) -> tuple[pl.DataFrame, dict[str, int]]:
    """Import each project's tasks that it does not hold yet (by `emonet_key`). Returns every platform task of the
    planned projects (PUSHED_SCHEMA) and how many tasks each project received now. A project whose config was
    edited by hand gets nothing: its answers could not be read back."""
    existing = platform_projects(client, url)
    if edited := edited_projects(existing, plan.specs):
        raise LabelStudioError(
            f"labeling config edited by hand in Label Studio project(s) {', '.join(edited)}: the platform reads "
            "answers by the control names it wrote; put the platform's config back (emonet annotate status shows "
            "which) or rename the project so a new one is made"
        )
    rows, pushed = [], {}
    for title, spec in plan.specs.items():
        project = ensure_project(client, url, spec, existing, local_root)
        have = project_task_keys(client, url, project.id)
        new = [t for t in plan.tasks[title] if t["data"]["emonet_key"] not in have]
        new = list({t["data"]["emonet_key"]: t for t in new}.values())
        if new:
            call(url, lambda new=new, project=project: client.projects.import_tasks(project.id, request=new))
            have = project_task_keys(client, url, project.id)
        pushed[title] = len(new)
        for key, task_id in sorted(have.items()):
            collection, image_id = key.split("/", 1)
            rows.append((project.id, title, collection, spec.round, spec.kind, spec.layout, key, image_id, task_id))
    return pl.DataFrame(rows, schema=PUSHED_SCHEMA, orient="row"), pushed


# ---- pulling ---------------------------------------------------------------------------------------------------


def pulled_through(store: Store, landing: str) -> dict[int, int]:
    """Per project id, the last annotation id a pull landed: the cursor, kept where the annotations are."""
    cursor: dict[int, int] = {}
    for landed in list_landing(store, landing):
        if m := _PULL_FILE.search(landed.name):
            project, last = int(m["project"]), int(m["last"])
            cursor[project] = max(cursor.get(project, 0), last)
    return cursor


@dataclass(frozen=True)
class Pull:
    project_id: int
    title: str
    collection: str
    annotations: int
    first: int
    last: int
    body: bytes

    @property
    def name(self) -> str:
        return f"label-studio-project-{self.project_id}-annotations-{self.first}-{self.last}.json"


def export_since(export: list[dict], after: int, emails: dict[int, str]) -> tuple[list[dict], list[int]]:
    """The export's tasks with only the annotations after id `after` (tasks without one dropped), each annotator
    named by e-mail (the importer's annotator id), and binary answers named by their task's emotions."""
    tasks, ids = [], []
    for task in sorted(export, key=lambda t: t["id"]):
        annotations = [a for a in task.get("annotations") or [] if a["id"] > after]
        if not annotations:
            continue
        data = task.get("data") or {}
        kept = []
        for a in sorted(annotations, key=lambda a: a["id"]):
            who = a.get("completed_by")
            who_id = who.get("id") if isinstance(who, dict) else who
            result = [_named_answer(item, data) for item in a.get("result") or []]
            kept.append(
                {
                    "id": a["id"],
                    "completed_by": {"id": who_id, "email": emails.get(who_id)},
                    "result": result,
                    "was_cancelled": bool(a.get("was_cancelled")),
                    "created_at": a.get("created_at"),
                }
            )
            ids.append(a["id"])
        tasks.append({"id": task["id"], "data": data, "annotations": kept})
    return tasks, ids


def _named_answer(item: dict, data: dict) -> dict:
    """A binary answer's control is `prompted` or `contrastive`; the emotion is in the task's data."""
    name = item.get("from_name") if isinstance(item, dict) else None
    if name in ("prompted", "contrastive") and data.get(name):
        return {**item, "from_name": data[name]}
    return item


def pushed_projects(store: Store) -> dict[int, tuple[str, str]]:
    """Project id -> (title, collection) of the projects this storage root pushed tasks to: the ones it pulls from
    (a server may hold other deployments' projects)."""
    if not store.has_table(Table.LABEL_STUDIO_TASKS):
        return {}
    tasks = store.read_table(Table.LABEL_STUDIO_TASKS).select("project_id", "project", "collection").unique()
    return {pid: (title, collection) for pid, title, collection in tasks.sort("project_id").iter_rows()}


def fetch_pulls(client, url: str, projects: dict[int, tuple[str, str]], cursor: dict[int, int]) -> list[Pull]:
    """Everything submitted since `cursor` in `projects`, fetched before anything lands: a server that stops
    half-way raises LabelStudioUnavailable and leaves the landing zone as it was."""
    emails = {u.id: u.email for u in call(url, lambda: list(client.users.list()))}
    pulls = []
    for project_id, (title, collection) in sorted(projects.items()):
        raw = call(url, lambda p=project_id: b"".join(client.projects.exports.download_sync(p, export_type="JSON")))
        tasks, ids = export_since(json.loads(raw), cursor.get(project_id, 0), emails)
        if ids:
            body = json.dumps(tasks, sort_keys=True, indent=1).encode()
            pulls.append(Pull(project_id, title, collection, len(ids), min(ids), max(ids), body))
    return pulls


def land_pulls(store: Store, landing: str, pulls: list[Pull]) -> list[tuple[str, str]]:
    """Each pull as a Label Studio export in the landing zone, declared expert ratings of its collection;
    (path, sha256) of each. The file's content names it, so landing the same pull twice is one file."""
    out = []
    for pull in pulls:
        declaration = BatchDeclaration(
            format="label-studio", collection=None if pull.collection == GENERATED else pull.collection
        )
        path, sha, _ = land_file(store, landing, pull.name, pull.body, declaration)
        out.append((path, sha))
    return out


@dataclass(frozen=True)
class ProjectStatus:
    id: int
    title: str
    tasks: int
    annotated_tasks: int
    annotations: int
    pulled_through: int
    waiting: int
    edited: bool


def project_status(
    client, url: str, projects: dict[int, tuple[str, str]], cursor: dict[int, int], expected: dict[str, str]
) -> list[ProjectStatus]:
    """Each project pushed to: its tasks, annotations, the last annotation pulled and how many wait for a pull;
    `expected` (title -> config) marks the ones edited by hand."""
    current = platform_projects(client, url)
    out = []
    for project_id, (title, _) in sorted(projects.items()):
        export = json.loads(
            call(
                url,
                lambda p=project_id: b"".join(
                    client.projects.exports.download_sync(p, export_type="JSON", download_all_tasks=True)
                ),
            )
        )
        ids = [a["id"] for t in export for a in t.get("annotations") or []]
        through = cursor.get(project_id, 0)
        config = current[title].label_config if title in current else ""
        out.append(
            ProjectStatus(
                project_id,
                title,
                len(export),
                sum(1 for t in export if t.get("annotations")),
                len(ids),
                through,
                sum(1 for i in ids if i > through),
                title in expected and not same_config(config, expected[title]),
            )
        )
    return out
