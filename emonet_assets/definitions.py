"""The one code location: everything under defs/, bound to the active profile's resources."""

import os

import dagster as dg

import emonet_assets.defs
from emonet_assets.defs.consensus.project import dbt_resource
from emonet_assets.profiles import Profile, load_profile
from emonet_assets.resources import (
    CatalogResource,
    EmbedderResource,
    ImageGeneratorResource,
    ProfileResource,
    StorageResource,
)


def build_definitions(profile: Profile) -> dg.Definitions:
    resources = {
        "storage": StorageResource(root=profile.root, endpoint_url=os.environ.get("EMONET_S3_ENDPOINT_URL")),
        "catalog": CatalogResource(database=profile.catalog_path),
        "profile": ProfileResource.from_profile(profile),
        "generator": ImageGeneratorResource(settings=profile.generation),
        "embedder": EmbedderResource(settings=profile.embedding),
        "dbt": dbt_resource(),
    }
    return dg.Definitions.merge(dg.load_defs(defs_root=emonet_assets.defs), dg.Definitions(resources=resources))


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_profile())
