from emonet_assets.resources.catalog import CatalogResource
from emonet_assets.resources.embedder import EmbedderResource
from emonet_assets.resources.generator import ImageGeneratorResource
from emonet_assets.resources.label_studio import LabelStudioResource
from emonet_assets.resources.notifier import NotifierResource
from emonet_assets.resources.profile import ProfileResource
from emonet_assets.resources.storage import StorageResource

__all__ = [
    "CatalogResource",
    "EmbedderResource",
    "ImageGeneratorResource",
    "LabelStudioResource",
    "NotifierResource",
    "ProfileResource",
    "StorageResource",
]
