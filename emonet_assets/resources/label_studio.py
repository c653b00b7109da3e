import dagster as dg
from pydantic import Field, PrivateAttr

from emonet_assets.lib.annotation.label_studio import TOKEN_ENV, LabelStudioError, call


class LabelStudioResource(dg.ConfigurableResource):
    """A Label Studio server through label-studio-sdk: its URL from the profile (`annotation.label_studio.url`), its
    API token from EMONET_LABEL_STUDIO_TOKEN only, so no profile file or run config ever holds it."""

    url: str
    token: str | None = Field(default=None, description=f"Set from {TOKEN_ENV}, never in a file.")
    timeout_s: float = Field(default=30.0, gt=0)

    _client: object = PrivateAttr(default=None)

    def client(self):
        """The SDK client, its token checked once against the server (a wrong one fails here, named)."""
        if self._client is None:
            if not self.token:
                raise LabelStudioError(
                    f"{TOKEN_ENV} is not set: export the API token of a Label Studio user at {self.url} "
                    "(profile setting annotation.label_studio.url) in it"
                )
            from label_studio_sdk.client import LabelStudio

            client = LabelStudio(base_url=self.url.rstrip("/"), api_key=self.token, timeout=self.timeout_s)
            call(self.url, client.users.whoami)
            self._client = client
        return self._client
