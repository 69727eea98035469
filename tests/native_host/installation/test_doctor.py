"""autosmime doctor: a real install is healthy (the real launcher runs the real host), and each
way a registration can break is reported in words."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from native_host.installation.browsers import Roots
from native_host.installation.doctor import Finding, diagnose, probe_host
from native_host.installation.install import InstallError, install
from native_host.protocol import VERSION
from native_host.transport.browser_ids import GECKO_ID, chromium_id

if TYPE_CHECKING:
    from conftest import Home, MemoryRegistry

DEV_ORIGIN = f"chrome-extension://{chromium_id()}/"
OTHER_ORIGIN = "chrome-extension://abcdefghijklmnopabcdefghijklmnop/"
MANIFEST = "org.autosmime.native.json"


def texts(finding: Finding) -> list[str]:
    return [check.text for check in finding.checks]


def failures(finding: Finding) -> list[str]:
    return [check.text for check in finding.checks if not check.ok]


def chromium_manifest(home: Home) -> Path:
    return home.config / "chromium" / "NativeMessagingHosts" / MANIFEST


def edit_manifest(manifest_file: Path, **changes: object) -> None:
    """Change fields of an installed manifest, as a user or another program might."""
    data = json.loads(manifest_file.read_text())
    data.update(changes)
    manifest_file.write_text(json.dumps(data))


def fake_host(folder: Path, body: str) -> Path:
    """A host program that misbehaves in a given way (a shell script)."""
    program = folder / "fake-host"
    program.write_text("#!/bin/sh\n" + body + "\n")
    program.chmod(0o755)
    return program


# --- Healthy ---------------------------------------------------------------------------------


def test_real_install_is_healthy_for_chromium_and_firefox(home: Home) -> None:
    install(["chromium", "firefox"])
    findings = diagnose()  # nothing found on PATH: the receipt says what to check

    assert [f.browser for f in findings] == ["chromium", "firefox"]
    for finding in findings:
        assert finding.ok, failures(finding)
        assert finding.hello is not None
        assert finding.hello["name"] == "autosmime"
        assert finding.hello["protocol"] == VERSION
    chromium, firefox = findings
    assert chromium.hello and chromium.hello["origin"] == DEV_ORIGIN
    assert firefox.hello and firefox.hello["origin"] == GECKO_ID
    assert any("the host answered: autosmime" in text for text in texts(chromium))


def test_user_data_dir_with_awkward_data_folder_is_healthy(home: Home, tmp_path: Path) -> None:
    roots = Roots(home=home.home, config_home=home.config, data_dir=tmp_path / "my data $USER")
    profile = tmp_path / "profile"
    install(user_data_dir=profile, roots=roots, extension_ids=[OTHER_ORIGIN])

    (finding,) = diagnose(user_data_dir=profile, roots=roots, extension_ids=[OTHER_ORIGIN])
    assert finding.ok, failures(finding)
    assert finding.manifest == str(profile / "NativeMessagingHosts" / MANIFEST)
    assert finding.hello and finding.hello["origin"] == OTHER_ORIGIN


def test_probe_host_talks_to_the_real_host() -> None:
    probe = probe_host([sys.executable, "-m", "native_host", DEV_ORIGIN])
    assert probe.ok, probe.text
    assert probe.result and probe.result["version"]


# --- Broken, one way at a time ---------------------------------------------------------------


def test_missing_manifest(home: Home) -> None:
    (finding,) = diagnose(["chrome"])
    assert not finding.ok
    expected = home.config / "google-chrome" / "NativeMessagingHosts" / MANIFEST
    assert failures(finding) == [f"there is no manifest at {expected}"]


def test_manifest_that_is_not_json(home: Home) -> None:
    install(["chromium"])
    chromium_manifest(home).write_text("{not json")
    (finding,) = diagnose(["chromium"])
    assert not finding.ok
    assert any("cannot be read as JSON" in text for text in failures(finding))


def test_wrong_name(home: Home) -> None:
    install(["chromium"])
    edit_manifest(chromium_manifest(home), name="org.example.other")
    (finding,) = diagnose(["chromium"])
    assert failures(finding) == [
        'its name is "org.example.other", but the extension asks for "org.autosmime.native"'
    ]


def test_host_path_not_executable(home: Home) -> None:
    install(["chromium"])
    launcher = home.autosmime / "bin" / "autosmime-host"
    launcher.chmod(0o644)
    (finding,) = diagnose(["chromium"])
    assert failures(finding) == [
        f"the host path {launcher} is not executable (run autosmime install again)",
        "the host was not started, because its path is unusable",
    ]


def test_host_path_relative(home: Home) -> None:
    install(["firefox"])
    manifest_file = home.home / ".mozilla" / "native-messaging-hosts" / MANIFEST
    edit_manifest(manifest_file, path="bin/autosmime-host")
    (finding,) = diagnose(["firefox"])
    assert "the host path bin/autosmime-host is not absolute (browsers require that)" in (
        failures(finding)
    )


def test_manifest_does_not_allow_our_extension(home: Home) -> None:
    install(["chromium"])
    edit_manifest(chromium_manifest(home), allowed_origins=[OTHER_ORIGIN])
    (finding,) = diagnose(["chromium"])
    assert failures(finding) == [
        f"it does not allow {DEV_ORIGIN} (allowed_origins lists {OTHER_ORIGIN})"
    ]


def test_host_refuses_an_extension_it_was_not_configured_for(home: Home) -> None:
    install(["chromium"])
    # The manifest lets the other id in, but the host's configuration does not know it.
    edit_manifest(chromium_manifest(home), allowed_origins=[OTHER_ORIGIN])
    (finding,) = diagnose(["chromium"], extension_ids=[OTHER_ORIGIN])
    (failure,) = failures(finding)
    assert failure.startswith(f"as {OTHER_ORIGIN}: the host refused the hello: forbidden_origin")


def test_host_that_does_not_answer(home: Home, tmp_path: Path) -> None:
    install(["chromium"])
    # The shell keeps stdout open while its child swallows the input: a hung host, whose whole
    # process group doctor must kill.
    silent = fake_host(tmp_path, "/bin/cat >/dev/null")
    edit_manifest(chromium_manifest(home), path=str(silent))
    (finding,) = diagnose(["chromium"], timeout=0.5)
    assert failures(finding) == [f"as {DEV_ORIGIN}: the host did not answer within 0.5 s"]


def test_host_that_exits_without_answering(home: Home, tmp_path: Path) -> None:
    install(["chromium"])
    broken = fake_host(tmp_path, "echo 'No module named native_host' >&2; exit 3")
    edit_manifest(chromium_manifest(home), path=str(broken))
    (finding,) = diagnose(["chromium"])
    assert failures(finding) == [
        f"as {DEV_ORIGIN}: the host exited with status 3 without answering "
        "(it said: No module named native_host)"
    ]


def test_host_that_cannot_start(home: Home, tmp_path: Path) -> None:
    install(["chromium"])
    not_a_program = tmp_path / "host.txt"
    not_a_program.write_text("just text")
    not_a_program.chmod(0o755)
    edit_manifest(chromium_manifest(home), path=str(not_a_program))
    (finding,) = diagnose(["chromium"])
    (failure,) = failures(finding)
    assert failure.startswith(f"as {DEV_ORIGIN}: the host could not be started: ")


def test_nothing_to_check(home: Home) -> None:
    with pytest.raises(InstallError, match="No supported browser was found"):
        diagnose()


# --- Windows, through the in-memory registry -------------------------------------------------


def test_windows_missing_registry_key(windows_roots: Roots, registry: MemoryRegistry) -> None:
    (finding,) = diagnose(["chrome"], platform="win32", roots=windows_roots, registry=registry)
    key = r"HKEY_CURRENT_USER\Software\Google\Chrome\NativeMessagingHosts\org.autosmime.native"
    assert (
        failures(finding)[0] == f"the registry key {key} is missing, so the browser cannot find us"
    )


def test_windows_registry_key_names_the_manifest(
    windows_roots: Roots, registry: MemoryRegistry
) -> None:
    install(["chrome"], platform="win32", roots=windows_roots, registry=registry)
    (finding,) = diagnose(["chrome"], platform="win32", roots=windows_roots, registry=registry)
    manifest_file = Path(windows_roots.data_dir) / "manifests" / "chrome" / MANIFEST
    key = r"HKEY_CURRENT_USER\Software\Google\Chrome\NativeMessagingHosts\org.autosmime.native"
    assert texts(finding)[:3] == [
        f"the registry key {key} names {manifest_file}",
        f"the manifest is present at {manifest_file}",
        "the manifest is valid JSON",
    ]


# --- The command line ------------------------------------------------------------------------


def test_cli_doctor(home: Home, tmp_path: Path) -> None:
    autosmime = str(Path(sys.executable).parent / "autosmime")
    profile = tmp_path / "profile"
    env = home.env()
    subprocess.run(
        [autosmime, "install", "--browser", "chromium", "--user-data-dir", str(profile)],
        env=env,
        check=True,
        capture_output=True,
    )
    done = subprocess.run(
        [autosmime, "doctor", "--user-data-dir", str(profile)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the host answered: autosmime" in done.stdout

    (home.autosmime / "bin" / "autosmime-host").chmod(0o644)
    done = subprocess.run(
        [autosmime, "doctor", "--user-data-dir", str(profile)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "is not executable" in done.stdout
