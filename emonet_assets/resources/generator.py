from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from emonet_assets.lib.generation.shard_generation import RunSettings
from emonet_assets.lib.shared.profile_files import model_location
from emonet_assets.profiles import GenerationSettings


class ImageGeneratorResource(dg.ConfigurableResource):
    """A diffusers text-to-image pipeline loaded once per run from a local folder or the HF cache; torch and
    diffusers are imported when the pipeline is first needed, not by every process that loads the definitions."""

    settings: GenerationSettings

    _pipe: object = PrivateAttr(default=None)
    _fingerprint: str | None = PrivateAttr(default=None)

    def pipeline(self):
        from emonet_assets.lib.generation.generation import build_tiny_pipeline, load_pipeline, quiet_libraries

        if self._pipe is None:
            quiet_libraries()
            s = self.settings
            if s.build_tiny:
                build_tiny_pipeline(Path(self.location()))
            self._pipe = load_pipeline(
                self.location(), device=s.device, dtype=s.dtype, scheduler=s.scheduler, compile=s.compile
            )
        return self._pipe

    def location(self) -> str:
        """The model folder under the project folder, or the Hugging Face id; `settings.model` is recorded."""
        return model_location(self.settings.model, build=self.settings.build_tiny)

    def fingerprint(self) -> str:
        from emonet_assets.lib.generation.generation import hub_model_fingerprint

        if self._fingerprint is None:
            self._fingerprint = hub_model_fingerprint(self.location())
        return self._fingerprint

    def run_settings(self) -> RunSettings:
        from emonet_assets.lib.generation.generation import GENERATION_LIBRARIES
        from emonet_assets.lib.shared.lineage import library_versions

        pipe, s = self.pipeline(), self.settings
        return RunSettings(
            model=s.model,
            fingerprint=self.fingerprint(),
            license=s.license,
            scheduler=type(pipe.scheduler).__name__,
            steps=s.steps,
            guidance=s.guidance,
            width=s.width,
            height=s.height,
            dtype=str(pipe.dtype).removeprefix("torch."),
            device=str(pipe.device),
            batch_size=s.batch_size,
            negative_prompt=s.negative_prompt,
            versions=library_versions(GENERATION_LIBRARIES),
        )
