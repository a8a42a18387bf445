"""Headless Chromium running the real neuroglancer client, driven over the DevTools protocol.

The client is the one bundled in the ``neuroglancer`` Python package, served by its
Python viewer on 127.0.0.1; the data is served by a CORS file server on 127.0.0.1.
No chromedriver: :class:`Chromium` speaks the DevTools protocol over aiohttp's websocket.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from PIL import Image

#: Reads the client's view of its layers: data-source load states, layer messages and
#: shader errors.
LAYERS_JS = """(() => {
  const v = window.viewer;
  if (v === undefined) return null;
  const layers = v.layerManager.managedLayers.map((m) => {
    const l = m.layer;
    if (l == null) return {name: m.name, sources: ['no layer'], messages: []};
    const sources = l.dataSources.map((d) => {
      const s = d.loadState;
      if (s === undefined) return 'loading';
      return s.error !== undefined ? 'error: ' + s.error.message : 'loaded';
    });
    const messages = Array.from(l.messages, (x) => ({severity: x.severity, message: x.message}));
    const e = l.shaderError === undefined ? undefined : l.shaderError.value;
    const shaderError = e == null ? null : String(e.message || e);
    return {name: m.name, visible: m.visible, sources, messages, shaderError};
  });
  return {ready: v.isReady(), layers};
})()"""

#: The canvas drawn now, as the Python screenshot handler takes it.
CANVAS_JS = "(() => { viewer.display.draw(); return viewer.display.canvas.toDataURL(); })()"


def chromium_path() -> str | None:
    """The Chromium executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Chromium:
    """A headless Chromium on one page, evaluated synchronously over the DevTools protocol."""

    def __init__(self, url: str, profile: Path, size: tuple[int, int] = (800, 600)) -> None:
        exe = chromium_path()
        if exe is None:
            raise RuntimeError("no chromium executable on PATH")
        profile.mkdir(parents=True, exist_ok=True)
        self.console: list[str] = []
        self.proc = subprocess.Popen(
            [
                exe,
                "--headless=new",
                "--no-sandbox",
                "--no-first-run",
                "--use-angle=swiftshader",
                "--enable-unsafe-swiftshader",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                f"--window-size={size[0]},{size[1]}",
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.loop = asyncio.new_event_loop()
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.is_file() or len(port_file.read_text().split()) < 2:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        self.port = int(port_file.read_text().split()[0])
        self._id = 0
        self.loop.run_until_complete(self._connect())

    async def _connect(self) -> None:
        self.session = aiohttp.ClientSession()
        for _ in range(100):
            async with self.session.get(f"http://127.0.0.1:{self.port}/json/list") as r:
                pages = [t for t in await r.json() if t["type"] == "page"]
            if pages:
                break
            await asyncio.sleep(0.1)
        self.ws = await self.session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        await self._send("Runtime.enable")

    async def _send(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        await self.ws.send_str(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads((await self.ws.receive()).data)
            if msg.get("method") == "Runtime.consoleAPICalled":
                args = msg["params"]["args"]
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in args)
                self.console.append(f"{msg['params']['type']}: {text}")
            elif msg.get("method") == "Runtime.exceptionThrown":
                self.console.append(f"exception: {msg['params']['exceptionDetails']}")
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        res = self.loop.run_until_complete(
            self._send("Runtime.evaluate", expression=expression, returnByValue=True)
        )
        if "exceptionDetails" in res:
            raise RuntimeError(f"page threw: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait_ready(self, names: list[str] | None = None, timeout: float = 60.0) -> dict[str, Any]:
        """Layer states once the viewer is ready (every visible chunk drawn) twice in a row.

        ``names``: wait for exactly these layers too (after a new state was sent).
        """
        deadline = time.monotonic() + timeout
        seen = 0
        state = None
        while time.monotonic() < deadline:
            state = self.evaluate(LAYERS_JS)
            if state is not None and names is not None:
                if [layer["name"] for layer in state["layers"]] != names:
                    time.sleep(0.1)
                    continue
            settled = state is not None and all(
                s != "loading" for layer in state["layers"] for s in layer["sources"]
            )
            seen = seen + 1 if settled and state["ready"] else 0
            if seen >= 2 or (
                settled
                and any(s.startswith("error") for ly in state["layers"] for s in ly["sources"])
            ):
                return state
            time.sleep(0.25)
        raise TimeoutError(f"neuroglancer not ready after {timeout} s: {state}; {self.console}")

    def canvas(self) -> np.ndarray:
        """The viewer's canvas as an RGB array."""
        url = self.evaluate(CANVAS_JS)
        png = base64.b64decode(url.split(",", 1)[1])
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))

    def close(self) -> None:
        """Stop the browser."""
        if getattr(self, "ws", None) is not None:
            self.loop.run_until_complete(self.ws.close())
        if getattr(self, "session", None) is not None:
            self.loop.run_until_complete(self.session.close())
        self.loop.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
