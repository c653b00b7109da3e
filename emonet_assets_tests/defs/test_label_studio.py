"""The annotation loop against a real Label Studio server (its own venv, SQLite, 127.0.0.1), started once for this
file: push the tiny graph's tasks, annotate as two experts through the API, pull through the sensor, import
through the landing zone, see consensus; and the faults: server down, stopped mid-pull, wrong token, a config
edited by hand, an unknown image, the same annotation twice. Every Label Studio test lives in this one file, so
pytest-xdist (--dist loadfile) starts the server once."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from emonet_assets.definitions import build_definitions
from emonet_assets.lib.annotation.annotation_batches import batch_log
from emonet_assets.lib.annotation.label_studio import TOKEN_ENV, LabelStudioError, pulled_through
from emonet_assets.lib.annotation.label_studio_server import LabelStudioServer
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.shared.tables import Table
from emonet_assets.runner import materialize_step, run_sensor, skip_message, tick_sensor
from emonet_assets_tests.conftest import REPO
from emonet_assets_tests.defs.conftest import tiny_profile

pytestmark = pytest.mark.slow

LS_BIN = REPO / ".venv-label-studio" / "bin" / "label-studio"
ADMIN = "admin@emonet.test"
EXPERTS = ("expert-a@emonet.test", "expert-b@emonet.test")
PULL, LANDING = "label_studio_pull_sensor", "annotation_landing_sensor"
SCREENSHOT = REPO / "docs" / "images" / "label-studio-task.png"  # the README's; EMONET_UPDATE_SCREENSHOTS=1 retakes it


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One Label Studio for the file: fresh SQLite data folder, a user with a known token, local-files serving of
    this session's temporary folder (every test root lies under it). Stops the process group it started."""
    if not LS_BIN.exists():
        pytest.fail(f"{LS_BIN} is missing: `make test` creates it (`make label-studio`)")
    base = tmp_path_factory.getbasetemp()
    ls = LabelStudioServer(
        executable=LS_BIN,
        data_dir=tmp_path_factory.mktemp("label-studio"),
        document_root=base,
        username=ADMIN,
        # A leading "-" (`secrets.token_urlsafe` gives one time in 64) must not be taken for an option.
        password="-" + secrets.token_urlsafe(12),
        token=secrets.token_hex(20),
    )
    seconds = ls.start()
    print(f"Label Studio started in {seconds:.1f} s")
    try:
        yield ls
    finally:
        ls.stop()


class Loop:
    """A copy of the materialized tiny root wired to the server; every image still needs expert ratings (the
    demo's panel is simulated)."""

    def __init__(self, root: Path, url: str, round_: str, document_root: Path | None = None, **settings):
        profile = tiny_profile(root)
        served = {"local_files_root": str(document_root)} if document_root else {}
        studio = profile.annotation.label_studio.model_copy(update={"url": url, "round": round_, **served, **settings})
        self.profile = profile.model_copy(
            update={"annotation": profile.annotation.model_copy(update={"label_studio": studio})}
        )
        self.defs = build_definitions(self.profile)
        self.instance = dg.DagsterInstance.ephemeral()
        self.store = Store(str(root))

    def push(self):
        return materialize_step(self.defs, self.instance, [Table.LABEL_STUDIO_TASKS.key])

    def pull(self):
        return tick_sensor(self.defs, self.instance, PULL)

    def import_landed(self):
        reports = run_sensor(self.defs, self.instance, LANDING)
        assert all(r.success for r in reports), [r.error for r in reports]
        return reports

    def collect(self):
        """`annotations`, as the automation conditions refresh it after an import (the CLI test sees consensus)."""
        report = materialize_step(self.defs, self.instance, [Table.ANNOTATIONS.key, Table.EXTERNAL_IMAGES.key])
        assert report.success, report.error

    def tasks(self) -> pl.DataFrame:
        return self.store.read_table(Table.LABEL_STUDIO_TASKS)


@pytest.fixture
def loop(server, materialized_root, tmp_path, monkeypatch):
    root = tmp_path / "root"
    shutil.copytree(materialized_root, root)
    monkeypatch.setenv(TOKEN_ENV, server.token)
    return Loop(root, server.url, f"t-{tmp_path.name[-12:].lower().replace('_', '-')}", server.document_root)


@pytest.fixture(scope="module")
def client(server):
    from label_studio_sdk.client import LabelStudio

    return LabelStudio(base_url=server.url, api_key=server.token)


@pytest.fixture(scope="module")
def experts(client):
    """Two expert accounts; the admin's token submits in their name (completed_by), as an import would."""
    existing = {u.email: u.id for u in client.users.list()}
    return [existing.get(e) or client.users.create(username=e.split("@")[0], email=e).id for e in EXPERTS]


def annotate(client, task_id: int, expert: int, ratings: dict[str, int], cancelled: bool = False):
    result = [
        {"from_name": emotion, "to_name": "image", "type": "number", "value": {"number": value}}
        for emotion, value in ratings.items()
    ]
    return client.annotations.create(task_id, completed_by=expert, result=result, was_cancelled=cancelled)


def ratings_project(loop: Loop) -> tuple[int, pl.DataFrame]:
    tasks = loop.tasks().filter(pl.col("kind") == "ratings")
    return tasks["project_id"][0], tasks.sort("image_id")


def test_push_once_annotate_as_two_experts_pull_and_see_consensus(loop, client, experts):
    report = loop.push()
    assert report.success, report.error
    tasks = loop.tasks()
    qc = loop.store.read_table(Table.IMAGE_QC)
    assert set(tasks.filter(pl.col("kind") == "ratings")["image_id"]) == set(qc.filter("passed")["image_sha256"])
    queue = loop.store.read_table(Table.REANNOTATION_QUEUE)
    assert set(tasks.filter(pl.col("kind") == "reannotation")["task_key"]) == set(
        (queue["collection"] + "/" + queue["image_id"]).unique()
    )
    # A re-run pushes nothing: every task is already there, and the table lists the same tasks.
    again = loop.push()
    assert again.success and loop.tasks().sort("task_id").equals(tasks.sort("task_id"))
    project, ratings = ratings_project(loop)
    assert len(list(client.tasks.list(project=project, fields="task_only", page_size=1000))) == ratings.height

    first, second = ratings["task_id"][0], ratings["task_id"][1]
    annotate(client, first, experts[0], {"anger": 5, "contentment": 1})
    annotate(client, first, experts[1], {"anger": 6})
    annotate(client, second, experts[0], {"anger": 2})
    annotate(client, second, experts[1], {}, cancelled=True)
    pulled = loop.pull()
    assert pulled.run_requests in (None, []), "the pull lands files; the landing sensor runs the import"
    assert skip_message(loop.pull()).startswith("no annotation submitted"), "a second pull finds nothing new"
    loop.import_landed()
    log = batch_log(loop.store).filter(pl.col("source_file").str.contains("label-studio-project"))
    assert log.select("status", "accepted", "rejected", "skipped").rows() == [("imported", 4, 0, 1)]

    loop.collect()
    annotations = loop.store.read_table(Table.ANNOTATIONS).filter(pl.col("annotator").is_in(EXPERTS))
    assert sorted(annotations.select("image_id", "annotator", "emotion_id", "value").rows()) == sorted(
        [
            (ratings["image_id"][0], EXPERTS[0], "anger", 5.0),
            (ratings["image_id"][0], EXPERTS[0], "contentment", 1.0),
            (ratings["image_id"][0], EXPERTS[1], "anger", 6.0),
            (ratings["image_id"][1], EXPERTS[0], "anger", 2.0),
        ]
    )
    assert set(annotations["raters"]) == {"expert"}
    # The experts' ratings count now: that image needs one rater fewer; a push leaves its task where it is.
    assert loop.push().success and loop.tasks().height == tasks.height


def test_the_binary_layout_brings_present_and_absent_for_the_prompted_and_the_contrastive_emotion(
    loop, client, experts, server
):
    binary = Loop(Path(loop.store.root), server.url, "binary", server.document_root, layout="binary")
    assert binary.push().success
    tasks = binary.tasks()
    assert set(tasks["layout"]) == {"binary", "intensity"}  # the re-annotation queue is rated 0-7 still
    project, ratings = ratings_project(binary)
    task = client.tasks.get(ratings["task_id"][0])
    prompted, contrastive = task.data["prompted"], task.data["contrastive"]
    design = binary.store.read_table(Table.PROMPT_DESIGN).join(
        binary.store.read_table(Table.GENERATED_IMAGES).filter(pl.col("image_sha256") == task.data["image_sha256"]),
        on="prompt_id",
    )
    assert design["emotion_id"].to_list() == [prompted] and contrastive != prompted
    answers = [
        {"from_name": name, "to_name": "image", "type": "choices", "value": {"choices": [choice]}}
        for name, choice in (("prompted", "present"), ("contrastive", "absent"))
    ]
    client.annotations.create(task.id, completed_by=experts[0], result=answers)
    binary.pull()
    binary.import_landed()
    batches = binary.store.read_table(Table.ANNOTATION_BATCHES).filter(pl.col("annotator") == EXPERTS[0])
    assert sorted(batches.select("emotion_id", "scale", "value").rows()) == sorted(
        [(prompted, "binary", 1), (contrastive, "binary", 0)]
    )


def test_server_stopped_in_the_middle_of_a_pull_then_the_next_tick_finishes_it_once(
    loop, client, experts, server, monkeypatch
):
    assert loop.push().success
    project, ratings = ratings_project(loop)
    requeued = loop.tasks().filter(pl.col("kind") == "reannotation").row(0, named=True)
    queue = loop.store.read_table(Table.REANNOTATION_QUEUE)
    emotion = queue.filter(
        (pl.col("collection") == requeued["collection"]) & (pl.col("image_id") == requeued["image_id"])
    )["emotion_id"][0]
    annotate(client, ratings["task_id"][0], experts[0], {"anger": 3})
    annotate(client, requeued["task_id"], experts[1], {emotion: 4})

    from label_studio_sdk.projects.exports.client import ExportsClient

    download = ExportsClient.download_sync
    calls = []

    def stop_after_the_first_project(self, *args, **kwargs):
        if calls:
            server.stop()
        calls.append(args)
        return download(self, *args, **kwargs)

    monkeypatch.setattr(ExportsClient, "download_sync", stop_after_the_first_project)
    skipped = loop.pull()
    assert "did not answer" in skip_message(skipped) and "next tick" in skip_message(skipped), skip_message(skipped)
    assert pulled_through(loop.store, loop.profile.annotation.landing) == {}, "nothing landed from a broken pull"
    monkeypatch.setattr(ExportsClient, "download_sync", download)
    server.start()

    loop.pull()
    assert skip_message(loop.pull()).startswith("no annotation submitted")
    loop.import_landed()
    log = batch_log(loop.store).filter(pl.col("source_file").str.contains("label-studio-project"))
    assert log["accepted"].sum() == 2 and log["rejected"].sum() == 0


def test_the_same_annotation_landed_twice_is_imported_once(loop, client, experts):
    assert loop.push().success
    _, ratings = ratings_project(loop)
    annotate(client, ratings["task_id"][0], experts[0], {"anger": 1})
    loop.pull()
    loop.import_landed()
    landing = loop.profile.annotation.landing
    pulled = [p for p, _, _ in loop.store.list_files(landing) if "label-studio-project" in p]
    [path] = [p for p in pulled if not p.endswith(".batch.json")]
    body = json.loads(loop.store.read_bytes(path))
    # A cursor lost after landing: the same annotation arrives again, twice, in a file of its own.
    loop.store.write_bytes(path.replace(".json", "-again.json"), json.dumps(body + body).encode())
    loop.import_landed()
    log = batch_log(loop.store).filter(pl.col("source_file").str.contains("label-studio-project")).sort("imported_at")
    assert log.select("accepted", "rejected").rows() == [(1, 0), (0, 2)]
    again = loop.store.read_table(Table.ANNOTATION_REJECTS, [log["batch_id"][1]])
    assert sorted(again["reason"]) == ["duplicate_in_batch", "duplicate_of_earlier_batch"]
    assert loop.store.read_table(Table.ANNOTATION_BATCHES).filter(pl.col("annotator") == EXPERTS[0]).height == 1


def test_an_annotation_of_an_image_the_platform_does_not_know_is_rejected_with_its_reason(loop, client, experts):
    assert loop.push().success
    project, _ = ratings_project(loop)
    unknown = "f" * 64
    stranger = {"image": "/data/local-files/?d=nowhere.png", "image_sha256": unknown, "emonet_key": "x/" + unknown}
    client.projects.import_tasks(project, request=[{"data": stranger}])
    [task] = [t for t in client.tasks.list(project=project, fields="task_only", page_size=1000) if t.data == stranger]
    annotate(client, task.id, experts[0], {"anger": 4})
    loop.pull()
    loop.import_landed()
    rejects = loop.store.read_table(Table.ANNOTATION_REJECTS).filter(pl.col("image_ref") == unknown)
    assert rejects.height == 1 and rejects["outcome"][0] == "rejected"
    assert rejects["reason"][0].startswith("unknown_image"), rejects.row(0, named=True)


def test_a_labeling_config_edited_by_hand_is_named_and_nothing_is_pushed(loop, client):
    assert loop.push().success
    project, _ = ratings_project(loop)
    edited = client.projects.get(project).label_config.replace("</View>\n", '<Header value="edited"/></View>', 1)
    client.projects.update(project, label_config=edited)
    report = loop.push()
    assert not report.success
    assert "edited by hand" in report.error and f"(id {project})" in report.error, report.error


def test_label_studio_down_skips_the_pull_with_the_reason(loop, monkeypatch):
    from emonet_assets.lib.annotation.label_studio_server import free_port

    url = f"http://127.0.0.1:{free_port()}"
    down = Loop(Path(loop.store.root), url, "down")
    skipped = down.pull()
    assert skip_message(skipped).startswith(f"Label Studio at {url} did not answer"), skip_message(skipped)


def test_a_missing_or_wrong_token_is_a_clear_error_naming_the_variable(loop, server, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "not-the-token")
    wrong = Loop(Path(loop.store.root), server.url, "wrong")
    assert TOKEN_ENV in skip_message(wrong.pull()) and "refused" in skip_message(wrong.pull())
    report = wrong.push()
    assert not report.success and TOKEN_ENV in report.error
    monkeypatch.delenv(TOKEN_ENV)
    missing = Loop(Path(loop.store.root), server.url, "missing")
    with pytest.raises(LabelStudioError, match=f"{TOKEN_ENV} is not set"):
        missing.defs.resources["label_studio"].client()


def test_a_pushed_task_shows_its_image_in_label_studio(loop, server, tmp_path):
    """A person logs in and opens a pushed task: its image comes from the storage root through local-files."""
    from emonet_assets_tests.browser import browser_page

    assert loop.push().success
    project, ratings = ratings_project(loop)
    shot = tmp_path / "label-studio-task.png"
    with browser_page(1280, 900) as (page, _errors):
        page.goto(f"{server.url}/user/login/")
        page.fill("input[name=email]", ADMIN)
        page.fill("input[name=password]", server.password)
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")
        page.goto(f"{server.url}/projects/{project}/data?task={ratings['task_id'][0]}")
        page.wait_for_selector("img[src*='local-files']", timeout=60_000)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not page.evaluate(
            "Array.from(document.images).some(i => i.src.includes('local-files') && i.naturalWidth > 0)"
        ):
            time.sleep(0.5)
        loaded = page.evaluate(
            "Array.from(document.images).filter(i => i.src.includes('local-files')).map(i => i.naturalWidth)"
        )
        page.screenshot(path=str(shot))
    assert any(width > 0 for width in loaded), loaded
    if os.environ.get("EMONET_UPDATE_SCREENSHOTS"):
        shutil.copyfile(shot, SCREENSHOT)


def test_the_command_line_pushes_pulls_and_shows_where_each_project_stands(
    loop, server, client, experts, demo_run, tmp_path, monkeypatch
):
    import yaml
    from click.testing import CliRunner

    from emonet_assets.cli import main
    from emonet_assets.cli.render import console

    settings = yaml.safe_load((REPO / "emonet_assets" / "profiles" / "tiny.yaml").read_text(encoding="utf-8"))
    settings["annotation"]["label_studio"] = {
        "url": server.url,
        "round": "cli",
        "local_files_root": str(server.document_root),
    }
    profile = tmp_path / "cli.yaml"
    profile.write_text(yaml.safe_dump(settings), encoding="utf-8")
    shutil.copytree(demo_run.folder / "home", tmp_path / "home")
    env = {
        "COLUMNS": "160",
        "EMONET_PROFILE": str(profile),
        "EMONET_ROOT": loop.store.root,
        "DAGSTER_HOME": str(tmp_path / "home"),  # the demo's: its history lets the automation refresh consensus
        TOKEN_ENV: server.token,
    }

    def emonet(*args):
        # rich's console keeps a width once one was set in this process (another test's command may have): COLUMNS
        # alone may not reach it, and the status table must not wrap its titles.
        monkeypatch.setattr(console, "_width", 160)
        result = CliRunner().invoke(main, ["annotate", *args], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    pushed = emonet("push")
    assert "emonet generated cli ratings" in pushed and "pushed 0 new" not in pushed
    assert "pushed 0 new task(s)" in emonet("push")
    tasks = Store(loop.store.root).read_table(Table.LABEL_STUDIO_TASKS).filter(pl.col("kind") == "ratings")
    annotate(client, tasks["task_id"][0], experts[1], {"anger": 7})
    # The pull imports, then refreshes consensus as the daemon's automation would.
    assert "accepted 1, rejected 0, skipped 0" in emonet("pull")
    image = tasks["image_id"][0]
    rated = (
        Store(loop.store.root)
        .read_table(Table.ANNOTATIONS)
        .filter((pl.col("image_id") == image) & (pl.col("emotion_id") == "anger"))
    )
    assert (EXPERTS[1], 7) in rated.select("annotator", "value").rows()
    consensus = (
        Store(loop.store.root)
        .read_table(Table.CONSENSUS_LABELS)
        .filter((pl.col("image_id") == image) & (pl.col("emotion_id") == "anger"))
    )
    assert consensus.select("n_ratings", "max_rating").rows() == [(rated.height, 7.0)]
    assert "no annotation submitted" in emonet("pull")
    status = emonet("status")
    assert "emonet generated cli ratings" in status and "edited by hand" not in status
