from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import PrivateAttr

from emonet_assets.lib.shared.profile_files import model_location
from emonet_assets.profiles import EmbeddingSettings

if TYPE_CHECKING:  # torch loads with it: only steps that embed pay for it
    from emonet_assets.lib.model.embedding import BackboneSpec, Embedder


class EmbedderResource(dg.ConfigurableResource):
    """The vision backbone, loaded once per run from a local folder or the HF cache (never downloaded)."""

    settings: EmbeddingSettings

    _embedder: object = PrivateAttr(default=None)

    def spec(self) -> BackboneSpec:
        from emonet_assets.lib.model.embedding import BackboneSpec

        s = self.settings
        source = model_location(s.source, build=s.build_tiny)
        return BackboneSpec(kind=s.kind, source=source, batch_size=s.batch_size, device=s.device, dtype=s.dtype)

    def embedder(self) -> Embedder:
        from emonet_assets.lib.model.embedding import Embedder, build_tiny_backbone

        if self._embedder is None:
            if self.settings.build_tiny:
                build_tiny_backbone(Path(model_location(self.settings.source, build=True)))
            self._embedder = Embedder.load(self.spec())
        return self._embedder
