"""Check, per browser, that the host is registered the way the browser needs and that it answers.

Each check mirrors what the browser itself does: find the manifest (on Windows through the
registry), parse it, match its name, start its `path` with the caller argument the browser would
pass, and exchange one hello frame. Findings are data; the command only prints them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any, BinaryIO

from native_host.installation import browsers as browser_table
from native_host.installation.browsers import CHROMIUM, Roots
from native_host.installation.install import (
    InstallError,
    Registry,
    Target,
    default_target,
    load_receipt,
    need_registry,
    no_browser_message,
    normalize_extension_id,
    resolve_targets,
)
from native_host.protocol import ProtocolError, encode
from native_host.transport.browser_ids import GECKO_ID, HOST_NAME, chromium_id, chromium_origin
from native_host.transport.framing import read_frame, write_frame

TIMEOUT = 5.0
HELLO: dict[str, Any] = {"id": 1, "op": "hello", "params": {}}


@dataclass(frozen=True)
class Check:
    """One finding in plain words; ok False means the browser cannot use the host."""

    ok: bool
    text: str


@dataclass
class Finding:
    """Everything doctor learnt about one browser (or one custom profile)."""

    browser: str
    label: str
    manifest: str
    checks: list[Check] = field(default_factory=list)
    hello: dict[str, Any] | None = None  # the hello result, when the host answered

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def add(self, ok: bool, text: str) -> bool:
        self.checks.append(Check(ok, text))
        return ok


@dataclass(frozen=True)
class Probe:
    """How the host answered one hello: ok, a sentence, and the result when there was one."""

    ok: bool
    text: str
    result: dict[str, Any] | None = None


# --- Talking to the host ---------------------------------------------------------------------


def _read_reply(stream: BinaryIO, box: list[Any]) -> None:
    """Read frames until the reply to HELLO (skipping progress events); runs in a thread."""
    try:
        while True:
            body = read_frame(stream)
            if body is None:
                box.append(None)
                return
            message = json.loads(body.decode("utf-8"))
            if isinstance(message, dict) and "ok" in message:
                box.append(message)
                return
    except (ProtocolError, ValueError, OSError) as error:
        box.append(error)


def _stop(process: subprocess.Popen[bytes], kill: bool) -> None:
    """End the host: close its input (a healthy host then exits), or kill it and its children."""
    if kill:
        try:
            if os.name == "posix":
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
        except ProcessLookupError:
            pass
    try:
        if process.stdin:
            process.stdin.close()
    except OSError:
        pass
    try:
        process.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(stream: Any) -> str:
    stream.seek(0)
    text = stream.read().decode("utf-8", "replace").strip()
    return text[-300:]


def probe_host(argv: Sequence[str], timeout: float = TIMEOUT) -> Probe:
    """Start the host as a browser would (argv), send hello, and wait up to timeout for a reply."""
    with tempfile.TemporaryFile() as errors:
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                start_new_session=os.name == "posix",
            )
        except OSError as error:
            return Probe(False, f"the host could not be started: {error.strerror or error}")
        box: list[Any] = []
        reader = threading.Thread(target=_read_reply, args=(process.stdout, box), daemon=True)
        reader.start()
        try:
            assert process.stdin is not None
            write_frame(process.stdin, encode(HELLO))
        except OSError:
            pass  # it exited already; the reader sees the end of its output
        reader.join(timeout)
        timed_out = reader.is_alive()
        _stop(process, kill=timed_out)
        reader.join(1.0)
        stderr = _tail(errors)
    if timed_out:
        return Probe(False, f"the host did not answer within {timeout:g} s")
    return _judge(box[0] if box else None, process.returncode, stderr)


def _judge(reply: Any, status: int | None, stderr: str) -> Probe:
    """Turn what came back from the host into a sentence."""
    said = f" (it said: {stderr})" if stderr else ""
    if reply is None:
        return Probe(False, f"the host exited with status {status} without answering{said}")
    if isinstance(reply, Exception):
        return Probe(False, f"the host's answer could not be read: {reply}{said}")
    if not reply.get("ok"):
        error = reply.get("error") or {}
        code, message = error.get("code", "?"), error.get("message", "")
        return Probe(False, f"the host refused the hello: {code}: {message}")
    result = reply.get("result") or {}
    return Probe(
        True,
        f"the host answered: {result.get('name', '?')} {result.get('version', '?')}, "
        f"protocol {result.get('protocol', '?')}, Python {result.get('python', '?')}",
        result,
    )


# --- Checking one browser --------------------------------------------------------------------


def _is_absolute(path: str, platform: str) -> bool:
    if platform == "win32":
        return PureWindowsPath(path).is_absolute() or Path(path).is_absolute()
    return Path(path).is_absolute()


def _check_registry(
    finding: Finding, target: Target, registry: Registry, expected: Path
) -> Path | None:
    """Windows: the key must exist and name a manifest; return the manifest it names."""
    where = rf"HKEY_CURRENT_USER\{target.registry_key}"
    assert target.registry_key is not None
    named = registry.read(target.registry_key)
    if named is None:
        finding.add(False, f"the registry key {where} is missing, so the browser cannot find us")
        return None
    same = Path(named) == expected
    extra = "" if same else f" (autosmime install writes {expected})"
    finding.add(True, f"the registry key {where} names {named}{extra}")
    return Path(named)


def _load_manifest(finding: Finding, path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        finding.add(False, f"there is no manifest at {path}")
        return None
    finding.add(True, f"the manifest is present at {path}")
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        finding.add(False, f"the manifest cannot be read as JSON: {error}")
        return None
    if not isinstance(data, dict):
        finding.add(False, "the manifest is JSON but not an object")
        return None
    finding.add(True, "the manifest is valid JSON")
    return data


def _check_fields(finding: Finding, data: dict[str, Any]) -> None:
    name = data.get("name")
    if name == HOST_NAME:
        finding.add(True, f'its name is "{HOST_NAME}"')
    else:
        wrong = json.dumps(name)
        finding.add(False, f'its name is {wrong}, but the extension asks for "{HOST_NAME}"')
    if data.get("type") != "stdio":
        finding.add(False, f'its type is {json.dumps(data.get("type"))}, not "stdio"')


def _check_path(finding: Finding, data: dict[str, Any], platform: str) -> str | None:
    """The host program must be an absolute path to an executable file; return it if usable."""
    path = data.get("path")
    if not isinstance(path, str) or not path:
        finding.add(False, "it names no host program (path)")
        return None
    if not _is_absolute(path, platform):
        finding.add(False, f"the host path {path} is not absolute (browsers require that)")
        return None
    if not Path(path).is_file():
        finding.add(False, f"the host path {path} does not exist")
        return None
    if platform != "win32" and not os.access(path, os.X_OK):
        finding.add(False, f"the host path {path} is not executable (run autosmime install again)")
        return None
    finding.add(True, f"the host path {path} is absolute and executable")
    return path


def _check_allowed(
    finding: Finding, target: Target, data: dict[str, Any], ids: Sequence[str]
) -> list[str]:
    """The manifest must allow our extension; return the callers to probe the host with."""
    if target.browser.family == CHROMIUM:
        key, wanted = "allowed_origins", [chromium_origin(i) for i in ids]
    else:
        key, wanted = "allowed_extensions", [GECKO_ID]
    listed = data.get(key)
    listed = listed if isinstance(listed, list) else []
    for caller in wanted:
        if caller in listed:
            finding.add(True, f"it allows {caller}")
        else:
            shown = ", ".join(map(str, listed)) or "nothing"
            finding.add(False, f"it does not allow {caller} ({key} lists {shown})")
    return wanted


def host_argv(target: Target, program: str, manifest_file: Path, caller: str) -> list[str]:
    """What the browser passes: Chromium the origin, Firefox the manifest path and add-on id."""
    if target.browser.family == CHROMIUM:
        return [program, caller]
    return [program, str(manifest_file), caller]


def check_target(
    target: Target,
    extension_ids: Sequence[str],
    *,
    platform: str,
    registry: Registry | None = None,
    timeout: float = TIMEOUT,
) -> Finding:
    """Every check for one target, in the order the browser would trip over them."""
    finding = Finding(target.browser.name, target.label, str(target.manifest))
    manifest_file: Path | None = target.manifest
    if target.registry_key and registry is not None:
        manifest_file = _check_registry(finding, target, registry, target.manifest)
        manifest_file = manifest_file or target.manifest
    finding.manifest = str(manifest_file)
    data = _load_manifest(finding, manifest_file)
    if data is None:
        return finding
    _check_fields(finding, data)
    program = _check_path(finding, data, platform)
    callers = _check_allowed(finding, target, data, extension_ids)
    if program is None:
        finding.add(False, "the host was not started, because its path is unusable")
        return finding
    for caller in callers:
        probe = probe_host(host_argv(target, program, manifest_file, caller), timeout)
        finding.add(probe.ok, f"as {caller}: {probe.text}")
        finding.hello = finding.hello or probe.result
    return finding


# --- Choosing what to check ------------------------------------------------------------------


def _receipt_targets(roots: Roots, platform: str) -> list[Target]:
    """Whatever autosmime install registered earlier, so doctor checks it even if unseen now."""
    targets = []
    for entry in load_receipt(roots).files:
        if entry.role != "manifest" or entry.browser not in browser_table.NAMES:
            continue
        browser = browser_table.get(entry.browser)
        if entry.user_data_dir:
            udd = Path(entry.user_data_dir)
            targets.append(Target(browser, Path(entry.path), None, udd))
        else:
            targets.append(default_target(browser, platform, roots))
    return targets


def targets_to_check(
    browsers: Sequence[str] | None,
    user_data_dir: Path | None,
    *,
    platform: str,
    roots: Roots,
    env: Mapping[str, str],
) -> list[Target]:
    """The named browser or profile; else the browsers found plus those in the receipt."""
    targets, _found = resolve_targets(
        browsers, user_data_dir, platform=platform, roots=roots, env=env
    )
    if not browsers and user_data_dir is None:
        targets += _receipt_targets(roots, platform)
    unique: dict[str, Target] = {}
    for target in targets:
        unique.setdefault(str(target.manifest), target)
    return list(unique.values())


def diagnose(
    browsers: Sequence[str] | None = None,
    user_data_dir: Path | None = None,
    extension_ids: Sequence[str] = (),
    *,
    platform: str = sys.platform,
    roots: Roots | None = None,
    env: Mapping[str, str] | None = None,
    registry: Registry | None = None,
    timeout: float = TIMEOUT,
) -> list[Finding]:
    """Check each chosen browser; InstallError when there is nothing to check or a bad argument."""
    platform = browser_table.platform_key(platform)
    env = os.environ if env is None else env
    roots = Roots.current() if roots is None else roots
    ids = [normalize_extension_id(raw) for raw in extension_ids] or [chromium_id()]
    targets = targets_to_check(browsers, user_data_dir, platform=platform, roots=roots, env=env)
    if not targets:
        raise InstallError(no_browser_message())
    if any(t.registry_key for t in targets):
        registry = need_registry(platform, registry)
    return [
        check_target(t, ids, platform=platform, registry=registry, timeout=timeout) for t in targets
    ]
