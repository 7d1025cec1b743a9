"""`transformers serve` (transformers 5.x): camp's CPU engine, pinned to one local model folder.

Run as `python -m camp.serving.engines.transformers serve FOLDER --host … --port … --device …`: the stock
`transformers serve` CLI inside this process, its ASGI app wrapped by `ServeFace`, which gives it what LMDeploy's
api_server has and it lacks:
  * a short model name: clients send the catalogue/registered name (`serve(..., model_name=…)`), which
    `/v1/models` lists; stock transformers serve wants the folder's full path in every request (a short name →
    400 "Server is pinned to …") and lists the HF cache's models instead of the pinned folder. The face rewrites
    the request's `model` to the folder (the folder path itself is still accepted);
  * an API key on every path but /health (`Authorization: Bearer …`; hmac comparison).
Name, key and folder arrive in the environment (`ps` shows argv; a key must not be there).
"""

from __future__ import annotations

import hmac
import json
import os
import sys
import time

KEY_ENV = "CAMP_SERVE_API_KEY"
FOLDER_ENV = "CAMP_SERVE_MODEL_ID"  # the pinned folder, as transformers serve wants it
NAME_ENV = "CAMP_SERVE_MODEL_NAME"  # the short name clients send
MODEL_ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/responses")


def command(model_dir, port: int, host: str = "127.0.0.1", device: str = "cpu") -> list[str]:
    """The server's command line (after the guard): this module running `transformers serve` on one folder."""
    return [sys.executable, "-m", "camp.serving.engines.transformers", "serve", str(model_dir), "--host", host,
            "--port", str(port), "--device", device]


def tool_command(model_dir, port: int, host: str = "127.0.0.1", device: str = "cpu") -> list[str]:
    """The same server as the stock CLI: what a student types by hand (no short name, no key)."""
    return ["transformers", "serve", str(model_dir), "--host", host, "--port", str(port), "--device", device]


class ServeFace:
    """ASGI middleware: the API key, `/v1/models` with the short name, and short name → folder in requests."""

    def __init__(self, app, *, key: str | None, folder: str, name: str):
        self.app, self.key, self.folder, self.name = app, key, folder, name or folder
        self.created = int(time.time())
        from camp.multimodal.backend import is_vision_folder

        self.vision = is_vision_folder(folder)

    async def _json(self, send, status: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        path, method = scope.get("path", "").rstrip("/"), scope.get("method", "GET")
        if self.key and path != "/health" and method != "OPTIONS":
            auth = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(auth, f"Bearer {self.key}".encode()):
                return await self._json(send, 401, {"error": {
                    "message": "invalid or missing API key (send Authorization: Bearer <key>)",
                    "type": "invalid_request_error", "code": "invalid_api_key"}})
        if path == "/v1/models" and method == "GET":
            return await self._json(send, 200, {"object": "list", "data": [
                {"id": self.name, "object": "model", "created": self.created, "owned_by": "camp"}]})
        if path in MODEL_ROUTES and method == "POST":
            return await self._rename(scope, receive, send)
        return await self.app(scope, receive, send)

    async def _rename(self, scope, receive, send):
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message], receive), send)  # the client went away
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict):
            from camp.multimodal.serving import check_request  # bad pictures: a 400, never a crashed server

            problem = check_request(data, self.vision, self.name)
            if problem:
                return await self._json(send, 400, {"error": {"message": problem, "type": "invalid_request_error",
                                                              "code": "invalid_image"}})
            asked = data.get("model")
            if asked in (None, "", self.name, self.folder):
                data["model"] = self.folder
                accepted = _accepted(scope.get("path", "").rstrip("/"))
                for k in set(data) - (accepted or set(data)):  # extras real clients send (Lagent: top_k, …)
                    del data[k]
                body = json.dumps(data).encode()
            else:
                return await self._json(send, 404, {"error": {
                    "message": f"model {asked!r} is not served here; this server serves {self.name!r}",
                    "type": "invalid_request_error", "code": "model_not_found"}})
        headers = [(k, v) for k, v in scope.get("headers") or [] if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        return await self.app(dict(scope, headers=headers), _replay([{"type": "http.request", "body": body}], receive),
                              send)


_ACCEPTED: dict[str, set | None] = {}


def _accepted(path: str) -> set | None:
    """The request fields transformers serve accepts on `path`. transformers 5.23 answers 422 "Unexpected fields"
    to anything else, where LMDeploy ignores what it does not use — clients written for LMDeploy (Lagent's GPTAPI
    sends top_k and skip_special_tokens) must work here too, so the face drops the rest."""
    if path not in _ACCEPTED:
        try:
            from transformers.cli.serving.chat_completion import ChatCompletionHandler
            from transformers.cli.serving.completion import CompletionHandler
            from transformers.cli.serving.response import ResponseHandler

            handler = {"/v1/chat/completions": ChatCompletionHandler, "/v1/completions": CompletionHandler,
                       "/v1/responses": ResponseHandler}[path]
            keys = set(getattr(handler._valid_params_class, "__mutable_keys__", ()))
        except (ImportError, KeyError, AttributeError):
            keys = set()
        _ACCEPTED[path] = keys or None  # None: this transformers does not say; keep every field
    return _ACCEPTED[path]


def _replay(messages, receive):
    """A receive() that hands out `messages` first, then the connection's own (a streaming response listens on it
    for the client's disconnect: answering "disconnect" at once would cancel the stream)."""
    pending = list(messages)

    async def replayed():
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


def main(args: list[str]) -> int:
    import uvicorn

    key = os.environ.pop(KEY_ENV, None) or None
    folder = os.environ.get(FOLDER_ENV) or next((a for a in args[1:] if not a.startswith("-")), "")
    name = os.environ.get(NAME_ENV) or folder
    original = uvicorn.Config.__init__

    def init(self, app, *a, **kw):
        original(self, ServeFace(app, key=key, folder=folder, name=name), *a, **kw)

    uvicorn.Config.__init__ = init  # transformers serve builds its uvicorn.Config itself: wrap the app there
    sys.argv = ["transformers", *args]
    from transformers.cli.transformers import main as transformers_main

    transformers_main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
