"""Client ID metadata documents (an MCP client's `client_id` is an https URL describing it), fetched the way
Gatehouse fetches everything: SSRF-checked and pinned to the checked address (mcpsettings.safehttp), no
redirects, a deadline and a size cap. django-oauth-toolkit validates the URL and reads the document; only
the connection is Gatehouse's, so one SSRF policy (MCP_ALLOW_PRIVATE_NETWORKS included) covers it."""

from __future__ import annotations

import requests
from oauth2_provider.cimd import CIMDError, SafeMetadataFetcher, _validate_client_id_url
from oauth2_provider.settings import oauth2_settings

from mcpsettings import safehttp


class PinnedMetadataFetcher(SafeMetadataFetcher):
    def fetch(self, client_id):
        _validate_client_id_url(client_id)
        headers = {"Accept": "application/json, application/*+json"}
        timeout = oauth2_settings.CIMD_FETCH_TIMEOUT_SECONDS
        try:
            with safehttp.session() as http:
                response = http.get(client_id, headers=headers, timeout=timeout, stream=True)
                try:
                    return self._read_document(response.raw)
                finally:
                    response.close()
        except requests.RequestException as exc:
            reason = safehttp.ssrf_reason(exc) or "the document could not be fetched"
            raise CIMDError(f"client_id document refused: {reason}") from None
