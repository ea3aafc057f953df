"""An upstream that counts the tool calls it executes and answers each with whatever bytes a test chose.

For the invariant "no upstream execution without a RequestLog row": tests compare `executions` with the
rows Gatehouse wrote, for hostile answers (deep nesting, out-of-range numbers, NUL characters).
"""

from __future__ import annotations

import json
import threading

from tests.peers.faults import FaultServer, Handler


class RecordingHandler(Handler):
    server: RecordingServer

    def fault_run(self, msg, msg_id) -> None:
        if msg.get("method") == "tools/list":
            self._rpc(msg_id, {"tools": [{"name": "t", "inputSchema": {"type": "object"}}]})
            return
        with self.server.lock:
            self.server.executions += 1
            self.server.seen.append((msg.get("params") or {}).get("arguments"))
        payload = self.server.answer_result
        self._send(200, b'{"jsonrpc":"2.0","id":' + json.dumps(msg_id).encode() + b',"result":' + payload + b"}")


class RecordingServer(FaultServer):
    def __init__(self) -> None:
        super().__init__()
        self.RequestHandlerClass = RecordingHandler
        self.lock = threading.Lock()
        self.executions = 0
        self.seen: list = []
        self.answer_result = b'{"content":[{"type":"text","text":"done"}],"isError":false}'
