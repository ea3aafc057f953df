// A downstream MCP client for the interop tests: the official TypeScript SDK, over Streamable HTTP to a URL
// (Bearer key) or over stdio to a command (e.g. mcp-remote). Runs the operations named in argv[2] (JSON)
// and prints one JSON line per operation: {"op", "ok", "value" | "error"}.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const plan = JSON.parse(process.argv[2]);
const transport = plan.command
  ? new StdioClientTransport({
      command: plan.command[0],
      args: plan.command.slice(1),
      stderr: "ignore",
      ...(plan.env ? { env: { ...process.env, ...plan.env } } : {}),
    })
  : new StreamableHTTPClientTransport(new URL(plan.url), {
      requestInit: { headers: { Authorization: `Bearer ${plan.key}` } },
    });
const client = new Client(
  { name: "ts-interop", version: "1.0.0" },
  { capabilities: plan.elicitation ? { elicitation: { form: {}, url: {} } } : {} },
);
if (plan.elicitation) {
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action: "accept", content: { color: "blue" } }));
}
await client.connect(transport);
const say = (op, ok, value) => console.log(JSON.stringify(ok ? { op, ok, value } : { op, ok, error: String(value) }));
say("connect", true, { server: client.getServerVersion(), capabilities: client.getServerCapabilities() });
for (const step of plan.steps) {
  try {
    const [op, args] = step;
    let value;
    if (op === "tools") value = (await client.listTools()).tools.map((t) => t.name);
    else if (op === "call") value = await client.callTool({ name: args.name, arguments: args.arguments ?? {} });
    else if (op === "resources") value = (await client.listResources()).resources.map((r) => r.uri);
    else if (op === "templates") value = (await client.listResourceTemplates()).resourceTemplates.map((r) => r.uriTemplate);
    else if (op === "read") value = await client.readResource({ uri: args.uri });
    else if (op === "prompts") value = (await client.listPrompts()).prompts.map((p) => p.name);
    else if (op === "prompt") value = await client.getPrompt({ name: args.name, arguments: args.arguments ?? {} });
    else if (op === "complete") value = await client.complete({ ref: args.ref, argument: args.argument });
    else if (op === "progress") {
      const seen = [];
      const result = await client.callTool({ name: args.name, arguments: args.arguments }, undefined, {
        onprogress: (p) => seen.push(p.progress),
      });
      value = { seen, result };
    } else if (op === "cancel") {
      const controller = new AbortController();
      setTimeout(() => controller.abort("enough"), args.after_ms);
      const started = Date.now();
      try {
        await client.callTool({ name: args.name, arguments: args.arguments }, undefined, { signal: controller.signal });
        value = { aborted: false };
      } catch (e) {
        value = { aborted: true, ms: Date.now() - started };
      }
      await new Promise((resolve) => setTimeout(resolve, 500)); // the cancel notification is sent in the background
    } else throw new Error(`unknown op ${op}`);
    say(op, true, value);
  } catch (e) {
    say(step[0], false, e);
  }
}
await client.close();
