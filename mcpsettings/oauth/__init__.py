"""OAuth 2.1 for upstream MCP servers (MCP authorization spec 2025-06-18 / 2025-11-25).

  metadata.py      RFC 9728 / RFC 8414 discovery and the HTTP (SSRF-pinned, https-only) under every step
  registration.py  Gatehouse's client at the issuer: manual, Client ID Metadata Document, or RFC 7591
  flow.py          authorization code with PKCE S256, single-use `state` and RFC 8707 `resource`
  tokens.py        storing, single-flight refresh with rotation, step-up, revocation and disconnect

Network before locks: every provider request is sent with no transaction open, except the refresh,
which holds the credential's row lock across its one request so that it stays single-flight.
No token ever appears in a log line, exception message or audit row.

Callers use these names (`from mcpsettings import oauth`, then `oauth.begin` …).
"""

from mcpsettings.oauth import metadata
from mcpsettings.oauth.flow import SESSION_KEY, begin, complete
from mcpsettings.oauth.metadata import OAuthError, parse_www_authenticate
from mcpsettings.oauth.registration import client_metadata_document, redirect_uri
from mcpsettings.oauth.tokens import ReconnectNeeded, disconnect, fresh, mark_insufficient_scope, refresh

# The raw fetches under their old names: the SSRF and redirect tests call them directly.
_get_json = metadata.get_json
_post_form = metadata.post_form

__all__ = [
    "SESSION_KEY",
    "OAuthError",
    "ReconnectNeeded",
    "begin",
    "client_metadata_document",
    "complete",
    "disconnect",
    "fresh",
    "mark_insufficient_scope",
    "parse_www_authenticate",
    "redirect_uri",
    "refresh",
]
