from emonet_assets.resources.catalog import CatalogResource
from emonet_assets.resources.profile import ProfileResource
from emonet_assets.resources.storage import StorageResource

__all__ = ["CatalogResource", "ProfileResource", "StorageResource"]
