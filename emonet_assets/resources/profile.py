from typing import Any

import dagster as dg

from emonet_assets.lib.prompt_design import DesignSpec
from emonet_assets.profiles import Profile


class ProfileResource(dg.ConfigurableResource):
    """The active profile's stage settings, shown in the launchpad and overridable per run."""

    name: str
    design: dict[str, Any]
    rollups: list[str]
    generation: dict[str, Any]

    @classmethod
    def from_profile(cls, profile: Profile) -> "ProfileResource":
        return cls(
            name=profile.name,
            design=profile.model_dump(mode="json", exclude_none=True)["design"],
            rollups=profile.taxonomy.rollups,
            generation=profile.generation.model_dump(mode="json", exclude_none=True),
        )

    def design_spec(self) -> DesignSpec:
        return Profile.model_validate(
            {
                "name": self.name,
                "description": "",
                "storage": {"root": "."},
                "design": self.design,
                "generation": self.generation,
            }
        ).design
