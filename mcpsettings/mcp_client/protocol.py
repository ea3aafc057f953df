"""MCP protocol facts shared by Gatehouse's client (mcp_client) and its own endpoint (governance/agents)."""

STATELESS_VERSION = "2026-07-28"  # no handshake: every request carries its version, method and _meta
HANDSHAKE_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")  # newest first
SUPPORTED_VERSIONS = (STATELESS_VERSION, *HANDSHAKE_VERSIONS)

# 2026-07-28: requests that name their target in an `Mcp-Name` header, and the param it repeats.
NAMED_METHODS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}

META_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"
META_LOG_LEVEL = "io.modelcontextprotocol/logLevel"  # 2026-07-28: log messages for this request, from this level
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")

# JSON-RPC and MCP error codes.
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL = -32700, -32600, -32601, -32602, -32603
HEADER_MISMATCH, UNSUPPORTED_VERSION, URL_ELICITATION_REQUIRED = -32020, -32022, -32042
