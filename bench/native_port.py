"""Native messaging figures (medians):
- native-port round trip: 1,000 sequential `echo` calls through the real extension's one
  persistent port and the real host, timed inside the service worker; peers: the same host
  driven straight over pipes from Python (the floor without a browser), and
  chrome.runtime.sendNativeMessage, which starts a host per message.
- host cold start: spawn of the installed launcher to the first `hello` reply; peer: the bare
  Python interpreter starting and exiting (`python -c pass`), the floor of any Python host.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.browser import ExtensionProfile, build_extension, launch_options, service_worker
from harness.native import ORIGIN, HostProcess


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def pipe_round_trip(config: Path, calls: int) -> float:
    host = HostProcess(config)
    try:
        host.call("echo", {"payload": "warm"})
        samples = []
        for n in range(calls):
            start = time.perf_counter()
            host.call("echo", {"payload": n}, msg_id=n)
            samples.append(time.perf_counter() - start)
    finally:
        host.close()
    return median_ms(samples)


def cold_start(launcher: Path, runs: int) -> float:
    request = json.dumps({"id": 1, "op": "hello", "params": {}}).encode()
    frame = len(request).to_bytes(4, "little") + request
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.Popen(
            [str(launcher), ORIGIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert proc.stdin and proc.stdout
        proc.stdin.write(frame)
        proc.stdin.flush()
        size = int.from_bytes(proc.stdout.read(4), "little")
        reply = json.loads(proc.stdout.read(size))
        samples.append(time.perf_counter() - start)
        assert reply.get("ok") is True, reply
        proc.stdin.close()
        proc.wait()
        proc.stdout.close()
    return median_ms(samples)


def interpreter_start(runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        samples.append(time.perf_counter() - start)
    return median_ms(samples)


BROWSER_LOOP = """async ({ calls, spawns, host }) => {
    const port = globalThis.autosmime;
    await port.request('echo', { payload: 'warm' });
    const persistent = [];
    for (let i = 0; i < calls; i++) {
        const t = performance.now();
        await port.request('echo', { payload: i });
        persistent.push(performance.now() - t);
    }
    const perMessage = [];
    for (let i = 0; i < spawns; i++) {
        const t = performance.now();
        const request = { id: i, op: 'echo', params: { payload: i } };
        const reply = await chrome.runtime.sendNativeMessage(host, request);
        if (!reply || reply.ok !== true) throw new Error('sendNativeMessage failed');
        perMessage.push(performance.now() - t);
    }
    const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1;
        return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
    return { persistent: median(persistent), perMessage: median(perMessage) };
}"""


def browser_round_trips(profile: ExtensionProfile, calls: int, spawns: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    from native_host.transport.browser_ids import HOST_NAME

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(**launch_options(profile))
        try:
            worker = service_worker(context)
            return worker.evaluate(
                BROWSER_LOOP, {"calls": calls, "spawns": spawns, "host": HOST_NAME}
            )
        finally:
            context.close()


def row(name: str, ours: float, peer_name: str, peer: float) -> str:
    return f"| {name} | {ours:.3f} ms | {peer_name} | {peer:.3f} ms | {ours / peer:.2f}x |"


def run(calls: int = 1000, runs: int = 20) -> list[str]:
    """Measure everything in one go; return the table's lines."""
    with tempfile.TemporaryDirectory(prefix="autosmime-bench-") as scratch:
        root = Path(scratch)
        profile = ExtensionProfile(root / "profile", build_extension(root / "dist"))
        profile.install_host()
        data_home = Path(profile.env["XDG_DATA_HOME"]) / "autosmime"
        launcher = data_home / "bin" / "autosmime-host"
        browser = browser_round_trips(profile, calls, runs)
        pipes = pipe_round_trip(data_home / "host.json", calls)
        cold = cold_start(launcher, runs)
        floor = interpreter_start(runs)
    return [
        "| figure (median) | ours | peer | peer figure | ratio |",
        "|---|---|---|---|---|",
        row(
            "native-port round trip (extension + host)",
            browser["persistent"],
            "same host over pipes, no browser",
            pipes,
        ),
        row(
            "native-port round trip (extension + host)",
            browser["persistent"],
            "sendNativeMessage (host per message)",
            browser["perMessage"],
        ),
        row("host cold start (spawn to first reply)", cold, "python -c pass", floor),
    ]
