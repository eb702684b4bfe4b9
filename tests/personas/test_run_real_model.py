"""One full run on the real embedded model, executed by the real Huey worker, watched over the socket."""
from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import websockets

from tests.livestack import ROOT, cleanup, start_stack

pytestmark = pytest.mark.stack

SMALL = """
[graph]
thoughts = 2
max_turns = 1
max_tokens = 48
json_max_tokens = 160
"""


def small_config(graph: str = SMALL) -> Path:
    """The shipped config with the embedded backend and short contributions (2 cores, no GPU)."""
    config = Path(tempfile.mkdtemp(prefix="a4ps-cfg-"))
    shutil.copy(ROOT / "config" / "codex.toml", config / "codex.toml")
    text = (ROOT / "config" / "settings.toml").read_text()
    text = text.replace('backend = "auto"', 'backend = "embedded"')
    text = re.sub(r"\[graph\].*?(?=\n\[|\Z)", graph.strip() + "\n", text, flags=re.S)
    (config / "settings.toml").write_text(text)
    return config


async def watch(url: str, cookie: str, origin: str, timeout: float) -> list[str]:
    messages: list[str] = []
    async with websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": origin}) as ws:
        await ws.send('{"resume_after": 0}')
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            msg = await asyncio.wait_for(ws.recv(), timeout=deadline - asyncio.get_running_loop().time())
            messages.append(msg)
            if re.search(r'id="run-head"[^>]*data-status="(done|failed|cancelled)"', msg):
                break
    return messages


def test_a_real_run_on_the_embedded_model_streams_its_steps():
    config = small_config()
    stack = start_stack(extra_env={"A4PS_CONFIG_DIR": str(config)})
    try:
        run_id = stack.submit("In one sentence: why is the sky blue?")
        url, cookie = f"ws://127.0.0.1:{stack.port}/ws/runs/{run_id}/", stack.login_cookie()
        # In its own thread: a browser fixture of another test may hold this thread's event loop.
        with ThreadPoolExecutor(1) as pool:
            messages = pool.submit(asyncio.run, watch(url, cookie, stack.url, timeout=900)).result()
        joined = "\n".join(messages)
        assert 'data-status="done"' in joined, stack.log()[-4000:]
        for persona in ("brick", "robin", "alfred"):
            assert f"persona-{persona}" in joined
        assert "is speaking" in joined  # tokens streamed while the model generated
        with stack.db() as conn:
            answer, status = conn.execute("select final_answer, status from personas_run where id=?",
                                          (run_id,)).fetchone()
            backends = {r[0] for r in conn.execute("select backend from personas_modelcall")}
        assert status == "done" and answer.strip()  # real generated text (a 0.5B model may be terse)
        assert backends == {"embedded"}
    finally:
        cleanup(stack)
        shutil.rmtree(config, ignore_errors=True)
