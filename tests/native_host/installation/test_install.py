"""autosmime install / uninstall: what lands where, on Linux, macOS and Windows, and taking it back.

Expected locations are spelled out literally here (not read from the browser table), so a wrong
table entry fails a test.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path, PureWindowsPath
from typing import TYPE_CHECKING

import pytest

from native_host.installation import browsers
from native_host.installation.browsers import Roots
from native_host.installation.install import InstallError, install, uninstall
from native_host.transport.browser_ids import GECKO_ID, HOST_DESCRIPTION, HOST_NAME, chromium_id

if TYPE_CHECKING:
    from conftest import Home, MemoryRegistry

DEV_ORIGIN = f"chrome-extension://{chromium_id()}/"
OTHER_ID = "abcdefghijklmnopabcdefghijklmnop"
MANIFEST = "org.autosmime.native.json"

# Linux manifest folders, relative to the fixture's folders (XDG config home, or home).
LINUX_FOLDERS = {
    "chrome": ("config", "google-chrome/NativeMessagingHosts"),
    "chromium": ("config", "chromium/NativeMessagingHosts"),
    "edge": ("config", "microsoft-edge/NativeMessagingHosts"),
    "brave": ("config", "BraveSoftware/Brave-Browser/NativeMessagingHosts"),
    "firefox": ("home", ".mozilla/native-messaging-hosts"),
}


def linux_manifest(home: Home, name: str) -> Path:
    base, relative = LINUX_FOLDERS[name]
    return getattr(home, base) / relative / MANIFEST


def autosmime_command() -> str:
    """The `autosmime` console script of the interpreter running the tests."""
    script = Path(sys.executable).parent / "autosmime"
    assert script.exists(), f"autosmime is not installed next to {sys.executable}"
    return str(script)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text("utf-8"))


# --- Linux -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LINUX_FOLDERS))
def test_linux_install_writes_manifest_launcher_and_config(home: Home, name: str) -> None:
    result = install([name], platform="linux")

    launcher = home.autosmime / "bin" / "autosmime-host"
    manifest_file = linux_manifest(home, name)
    expected = {
        "name": HOST_NAME,
        "description": HOST_DESCRIPTION,
        "path": str(launcher),
        "type": "stdio",
    }
    if name == "firefox":
        expected["allowed_extensions"] = [GECKO_ID]
    else:
        expected["allowed_origins"] = [DEV_ORIGIN]
    assert read_json(manifest_file) == expected
    # Nothing for the other browsers.
    manifests = sorted(str(p) for p in home.root.rglob(MANIFEST))
    assert manifests == [str(manifest_file)]

    assert stat.S_IMODE(launcher.stat().st_mode) == 0o755
    script = launcher.read_text()
    assert script.startswith("#!/bin/sh\n")
    assert f"exec {sys.executable} -m native_host --config {home.autosmime / 'host.json'}" in script
    assert script.rstrip().endswith('"$@"')
    assert read_json(home.autosmime / "host.json") == {
        "allowed_origins": [DEV_ORIGIN],
        "allowed_extensions": [GECKO_ID],
    }
    assert [t.browser.name for t in result.targets] == [name]


def test_launcher_quotes_paths_with_spaces(tmp_path: Path, home: Home) -> None:
    data = tmp_path / "odd data $HOME"
    roots = Roots(home=home.home, config_home=home.config, data_dir=data)
    install(["chromium"], platform="linux", roots=roots)
    launcher = data / "bin" / "autosmime-host"
    manifest_file = home.config / "chromium" / "NativeMessagingHosts" / MANIFEST
    assert read_json(manifest_file)["path"] == str(launcher)
    exec_line = launcher.read_text().splitlines()[-1]
    # The shell must see each path as one word, with $HOME left alone.
    assert shlex.split(exec_line) == [
        "exec",
        sys.executable,
        "-m",
        "native_host",
        "--config",
        str(data / "host.json"),
        "$@",
    ]


def test_user_data_dir_targets_that_profile_only(home: Home, tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    profile.mkdir()
    result = install(user_data_dir=profile, extension_ids=[OTHER_ID])

    manifest_file = profile / "NativeMessagingHosts" / MANIFEST
    data = read_json(manifest_file)
    assert data["allowed_origins"] == [DEV_ORIGIN, f"chrome-extension://{OTHER_ID}/"]
    assert data["path"] == str(home.autosmime / "bin" / "autosmime-host")
    assert [t.browser.name for t in result.targets] == ["chromium"]
    assert not (home.config / "chromium").exists()
    assert read_json(home.autosmime / "host.json")["allowed_origins"] == data["allowed_origins"]


def test_user_data_dir_refuses_firefox(home: Home, tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="Chromium-family"):
        install(["firefox"], user_data_dir=tmp_path / "profile")
    assert not home.autosmime.exists()


def test_bad_extension_id_is_refused_before_writing(home: Home) -> None:
    with pytest.raises(InstallError, match="not a Chromium extension id"):
        install(["chromium"], extension_ids=["not-an-id"])
    assert list(home.root.rglob("*.json")) == []


def test_reinstall_is_idempotent_and_merges_extension_ids(home: Home) -> None:
    install(["chromium", "firefox"])
    receipt = home.autosmime / "install-receipt.json"
    first = receipt.read_bytes()
    tree = home.tree()

    again = install(["chromium", "firefox"])
    assert {action.verb for action in again.actions} == {"unchanged"}
    assert receipt.read_bytes() == first
    assert home.tree() == tree

    install(["chromium"], extension_ids=[f"chrome-extension://{OTHER_ID}/"])
    install(["chromium"])  # without the id: it stays allowed
    data = read_json(receipt)
    paths = [entry["path"] for entry in data["files"]]
    assert len(paths) == len(set(paths)) == 4  # launcher, host.json, two manifests
    assert data["extension_ids"] == [OTHER_ID]
    origins = [DEV_ORIGIN, f"chrome-extension://{OTHER_ID}/"]
    assert read_json(home.autosmime / "host.json")["allowed_origins"] == origins
    assert read_json(linux_manifest(home, "chromium"))["allowed_origins"] == origins
    for entry in data["files"]:
        content = Path(entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(content).hexdigest()


def test_detects_browsers_by_profile_folder(home: Home) -> None:
    with pytest.raises(InstallError, match="No supported browser was found"):
        install()
    assert not home.autosmime.exists()

    (home.config / "BraveSoftware" / "Brave-Browser").mkdir(parents=True)
    (home.home / ".mozilla" / "firefox").mkdir(parents=True)
    result = install()
    assert sorted(result.found) == ["brave", "firefox"]
    assert linux_manifest(home, "brave").is_file()
    assert linux_manifest(home, "firefox").is_file()
    assert not linux_manifest(home, "chrome").exists()


def test_detects_browsers_by_program_on_path(home: Home) -> None:
    program = home.empty_path / "chromium"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    assert browsers.detect("linux") == {"chromium": str(program)}


# --- uninstall -------------------------------------------------------------------------------


def test_uninstall_removes_exactly_what_install_wrote(home: Home) -> None:
    chromium_hosts = home.config / "chromium" / "NativeMessagingHosts"
    chromium_hosts.mkdir(parents=True)
    (chromium_hosts / "com.example.other.json").write_text('{"name": "com.example.other"}')
    (home.data / "unrelated.txt").write_text("keep me")
    before = home.tree()

    install(["chromium", "firefox"])
    firefox_hosts = home.home / ".mozilla" / "native-messaging-hosts"
    assert firefox_hosts.is_dir()
    result = uninstall()

    assert result.warnings == []
    assert home.tree() == before  # the folders install created are gone, the rest untouched


def test_uninstall_keeps_folders_that_others_filled(home: Home) -> None:
    install(["firefox"])
    firefox_hosts = home.home / ".mozilla" / "native-messaging-hosts"
    foreign = firefox_hosts / "com.example.other.json"
    foreign.write_text("{}")

    uninstall()
    assert foreign.read_text() == "{}"
    assert not (firefox_hosts / MANIFEST).exists()
    assert not home.autosmime.exists()


def test_uninstall_leaves_an_edited_manifest(home: Home) -> None:
    install(["chromium"])
    manifest_file = linux_manifest(home, "chromium")
    edited = manifest_file.read_text().replace("stdio", "stdio ")
    manifest_file.write_text(edited)

    result = uninstall()
    assert manifest_file.read_text() == edited
    assert any(str(manifest_file) in warning for warning in result.warnings)
    assert not (home.autosmime / "bin" / "autosmime-host").exists()
    assert not (home.autosmime / "install-receipt.json").exists()


def test_uninstall_one_browser_keeps_the_rest(home: Home) -> None:
    install(["chromium", "firefox"])
    result = uninstall(["firefox"])
    assert not linux_manifest(home, "firefox").exists()
    assert not (home.home / ".mozilla").exists()
    assert linux_manifest(home, "chromium").is_file()
    assert (home.autosmime / "bin" / "autosmime-host").is_file()
    assert result.remaining == [str(linux_manifest(home, "chromium"))]

    uninstall()
    assert not home.autosmime.exists()
    assert not (home.config / "chromium").exists()


def test_uninstall_without_receipt_does_nothing(home: Home) -> None:
    before = home.tree()
    result = uninstall()
    assert not result.had_receipt
    assert home.tree() == before


# --- macOS -----------------------------------------------------------------------------------

MAC_FOLDERS = {
    "chrome": "Google/Chrome",
    "chromium": "Chromium",
    "edge": "Microsoft Edge",
    "brave": "BraveSoftware/Brave-Browser",
    "firefox": "Mozilla",
}


@pytest.mark.parametrize("name", sorted(MAC_FOLDERS))
def test_macos_manifest_paths(name: str) -> None:
    roots = Roots(
        home=Path("/Users/ann"),
        config_home=Path("/Users/ann/.config"),
        data_dir=Path("/Users/ann/Library/Application Support/autosmime"),
    )
    support = "/Users/ann/Library/Application Support"
    expected = Path(f"{support}/{MAC_FOLDERS[name]}/NativeMessagingHosts/{MANIFEST}")
    browser = browsers.get(name)
    assert browsers.manifest_path(browser, "darwin", roots) == expected
    assert browsers.registry_key(browser, "darwin") is None


def test_macos_install_writes_there(home: Home) -> None:
    roots = Roots(
        home=home.home,
        config_home=home.config,
        data_dir=home.home / "Library" / "Application Support" / "autosmime",
    )
    install(["chrome", "firefox"], platform="darwin", roots=roots)
    support = home.home / "Library" / "Application Support"
    chrome = read_json(support / "Google" / "Chrome" / "NativeMessagingHosts" / MANIFEST)
    assert chrome["path"] == str(support / "autosmime" / "bin" / "autosmime-host")
    assert (support / "Mozilla" / "NativeMessagingHosts" / MANIFEST).is_file()
    uninstall(platform="darwin", roots=roots)
    assert not (home.home / "Library").exists()


def test_macos_finds_app_bundles() -> None:
    roots = Roots(home=Path("/Users/ann"), config_home=Path("/x"), data_dir=Path("/x"))
    bundle = "/Applications/Brave Browser.app"
    found = browsers.find(
        browsers.get("brave"), "darwin", roots, None, exists=lambda p: str(p) == bundle
    )
    assert found == bundle


# --- Windows ---------------------------------------------------------------------------------

WINDOWS_KEYS = {
    "chrome": r"Software\Google\Chrome\NativeMessagingHosts\org.autosmime.native",
    "chromium": r"Software\Chromium\NativeMessagingHosts\org.autosmime.native",
    "edge": r"Software\Microsoft\Edge\NativeMessagingHosts\org.autosmime.native",
    "brave": r"Software\BraveSoftware\Brave-Browser\NativeMessagingHosts\org.autosmime.native",
    "firefox": r"Software\Mozilla\NativeMessagingHosts\org.autosmime.native",
}


@pytest.mark.parametrize("name", sorted(WINDOWS_KEYS))
def test_windows_manifest_paths_and_keys(name: str) -> None:
    roots = Roots(
        home=PureWindowsPath(r"C:\Users\ann"),
        config_home=PureWindowsPath(r"C:\Users\ann\.config"),
        data_dir=PureWindowsPath(r"C:\Users\ann\AppData\Local\autosmime"),
    )
    browser = browsers.get(name)
    expected = PureWindowsPath(rf"C:\Users\ann\AppData\Local\autosmime\manifests\{name}\{MANIFEST}")
    assert browsers.manifest_path(browser, "win32", roots) == expected
    assert browsers.registry_key(browser, "win32") == WINDOWS_KEYS[name]


def test_windows_finds_programs_in_program_files(windows_roots: Roots) -> None:
    edge = windows_roots.program_dirs[0] / "Microsoft" / "Edge" / "Application" / "msedge.exe"
    found = browsers.find(
        browsers.get("edge"), "win32", windows_roots, None, exists=lambda p: p == edge
    )
    assert found == str(edge)


def test_windows_install_and_uninstall(
    home: Home, windows_roots: Roots, registry: MemoryRegistry
) -> None:
    registry_before = dict(registry.keys)
    before = home.tree()
    install(["chrome", "firefox"], platform="win32", roots=windows_roots, registry=registry)

    data_dir = Path(windows_roots.data_dir)
    launcher = data_dir / "bin" / "autosmime-host.bat"
    script = launcher.read_bytes().decode()
    assert script.startswith("@echo off\r\n")
    assert f'"{sys.executable}" -m native_host --config "{data_dir / "host.json"}" %*' in script
    for name in ("chrome", "firefox"):
        manifest_file = data_dir / "manifests" / name / MANIFEST
        assert read_json(manifest_file)["path"] == str(launcher)
        assert registry.read(WINDOWS_KEYS[name]) == str(manifest_file)
    receipt = read_json(data_dir / "install-receipt.json")
    assert sorted(entry["key"] for entry in receipt["registry"]) == [
        WINDOWS_KEYS["chrome"],
        WINDOWS_KEYS["firefox"],
    ]
    for entry in receipt["registry"]:
        assert entry["sha256"] == hashlib.sha256(entry["data"].encode()).hexdigest()
    assert not (home.config / "google-chrome").exists()

    again = install(["chrome", "firefox"], platform="win32", roots=windows_roots, registry=registry)
    assert {action.verb for action in again.actions} == {"unchanged"}

    result = uninstall(platform="win32", roots=windows_roots, registry=registry)
    assert result.warnings == []
    assert registry.keys == registry_before  # Software\Google\Chrome stays; the rest is gone
    assert home.tree() == before


def test_windows_uninstall_leaves_a_value_someone_changed(
    windows_roots: Roots, registry: MemoryRegistry
) -> None:
    install(["edge"], platform="win32", roots=windows_roots, registry=registry)
    registry.write(WINDOWS_KEYS["edge"], r"C:\elsewhere\host.json")

    result = uninstall(platform="win32", roots=windows_roots, registry=registry)
    assert registry.read(WINDOWS_KEYS["edge"]) == r"C:\elsewhere\host.json"
    assert any("elsewhere" in warning for warning in result.warnings)


def test_windows_refuses_user_data_dir(windows_roots: Roots, registry: MemoryRegistry) -> None:
    with pytest.raises(InstallError, match="registry"):
        install(
            user_data_dir=Path("profile"), platform="win32", roots=windows_roots, registry=registry
        )


# --- The command line ------------------------------------------------------------------------


def test_cli_install_and_uninstall(home: Home, tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    profile.mkdir()
    command = [autosmime_command()]
    env = home.env()

    done = subprocess.run(
        [*command, "install", "--browser", "chromium", "--user-data-dir", str(profile)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    manifest_file = profile / "NativeMessagingHosts" / MANIFEST
    assert str(manifest_file) in done.stdout
    launcher = Path(read_json(manifest_file)["path"])
    assert launcher == home.autosmime / "bin" / "autosmime-host"
    assert os.access(launcher, os.X_OK)

    done = subprocess.run([*command, "uninstall"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "removed" in done.stdout
    assert not manifest_file.exists()
    assert profile.is_dir()  # it was there before install
    assert not home.autosmime.exists()


def test_cli_install_says_when_no_browser_is_found(home: Home) -> None:
    done = subprocess.run(
        [autosmime_command(), "install"], env=home.env(), capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "No supported browser was found" in done.stderr
    assert not home.autosmime.exists()


@pytest.mark.parametrize("command", ["install", "uninstall", "doctor"])
def test_cli_help(command: str) -> None:
    done = subprocess.run(
        [autosmime_command(), command, "--help"], capture_output=True, text=True, check=True
    )
    assert "--browser" in done.stdout
    assert "--user-data-dir" in done.stdout
