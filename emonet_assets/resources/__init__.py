from emonet_assets.resources.catalog import CatalogResource
from emonet_assets.resources.generator import ImageGeneratorResource
from emonet_assets.resources.profile import ProfileResource
from emonet_assets.resources.storage import StorageResource

__all__ = ["CatalogResource", "ImageGeneratorResource", "ProfileResource", "StorageResource"]
