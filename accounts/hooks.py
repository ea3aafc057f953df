"""Places where an app higher up adds to a lower app's pages without the lower app importing it.

Dependencies run one way (accounts ← mcpsettings ← governance); a page of a lower app that shows
something a higher app owns asks a Hook, which the higher app fills from its AppConfig.ready.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Hook:
    def __init__(self, name: str, empty: Callable[[], Any] = list) -> None:
        self.name, self.empty, self.func = name, empty, None

    def register(self, func: Callable[..., Any]) -> None:
        self.func = func

    def __call__(self, *args, **kwargs) -> Any:
        return self.func(*args, **kwargs) if self.func is not None else self.empty()


# The org page's servers (each with `org_context`): filled by mcpsettings.
org_servers = Hook("org_servers")
