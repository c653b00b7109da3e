from typing import Any

import dagster as dg
from pydantic import TypeAdapter

from emonet_assets.lib.design.prompt_design import DesignSpec
from emonet_assets.profiles import (
    AnnotationSettings,
    DatasetSettings,
    FairnessSettings,
    LeaderboardSettings,
    ModelSettings,
    Profile,
    QCSettings,
    ReleaseSettings,
    ScheduleSettings,
)


class ProfileResource(dg.ConfigurableResource):
    """The active profile's stage settings, shown in the launchpad and overridable per run."""

    name: str
    design: dict[str, Any]
    rollups: list[str]
    qc: QCSettings
    annotation: AnnotationSettings
    dataset: DatasetSettings
    model: ModelSettings
    leaderboard: LeaderboardSettings
    fairness: FairnessSettings
    release: ReleaseSettings
    schedules: ScheduleSettings

    @classmethod
    def from_profile(cls, profile: Profile) -> "ProfileResource":
        return cls(
            name=profile.name,
            design=profile.model_dump(mode="json", exclude_none=True)["design"],
            rollups=profile.taxonomy.rollups,
            qc=profile.qc,
            annotation=profile.annotation,
            dataset=profile.dataset,
            model=profile.model,
            leaderboard=profile.leaderboard,
            fairness=profile.fairness,
            release=profile.release,
            schedules=profile.schedules,
        )

    def design_spec(self) -> DesignSpec:
        return TypeAdapter(DesignSpec).validate_python(self.design)
