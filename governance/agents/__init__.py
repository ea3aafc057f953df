"""Every way an agent reaches a tool: the REST tool views (rest.py) and Gatehouse's own MCP endpoint
(mcp.py). Both resolve the server, run governance/calls.py's governed call, and map its result to their
protocol with one table each. A new entry point goes here and does the same."""
