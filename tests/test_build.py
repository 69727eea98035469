"""build.py: both packages from one source, fixed ids, reproducible archives, host manifests."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from native_host.protocol import SCHEMA
from native_host.transport.browser_ids import GECKO_ID, HOST_NAME, chromium_id, chromium_origin

ROOT = Path(__file__).resolve().parent.parent


def build(out: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "build.py"), "--out", str(out)], check=True)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    build(out)
    return out


def test_chromium_manifest_key_gives_the_registered_id(dist: Path) -> None:
    manifest = json.loads((dist / "chromium" / "manifest.json").read_text())
    assert manifest["manifest_version"] == 3
    digest = hashlib.sha256(base64.b64decode(manifest["key"])).hexdigest()[:32]
    assert "".join(chr(ord("a") + int(d, 16)) for d in digest) == chromium_id()
    assert json.loads((dist / "extension-ids.json").read_text())["chromium"] == chromium_id()
    assert manifest["background"] == {"service_worker": "background/worker.js", "type": "module"}
    assert manifest["content_scripts"][0]["matches"] == ["https://mail.google.com/*"]


def test_firefox_variant_has_a_gecko_id_and_an_event_page(dist: Path) -> None:
    with zipfile.ZipFile(dist / "firefox.xpi") as xpi:
        manifest = json.loads(xpi.read("manifest.json"))
    assert "key" not in manifest
    assert manifest["browser_specific_settings"]["gecko"]["id"] == GECKO_ID
    assert manifest["background"] == {"scripts": ["background/worker.js"], "type": "module"}


def test_archives_hold_the_trees_and_the_protocol(dist: Path) -> None:
    for tree, archive in (("chromium", "chromium.zip"), ("firefox", "firefox.xpi")):
        files = {
            p.relative_to(dist / tree).as_posix() for p in (dist / tree).rglob("*") if p.is_file()
        }
        with zipfile.ZipFile(dist / archive) as bundle:
            assert set(bundle.namelist()) == files
            assert json.loads(bundle.read("protocol.json")) == SCHEMA
        assert not any(name.endswith(".test.js") for name in files)
        assert "background/protocol.js" in files


def test_archives_are_reproducible(dist: Path, tmp_path: Path) -> None:
    build(tmp_path)
    for archive in ("chromium.zip", "firefox.xpi"):
        assert (tmp_path / archive).read_bytes() == (dist / archive).read_bytes()


def test_host_manifests_name_the_extension_ids(dist: Path) -> None:
    folder = dist / "native-messaging"
    chromium = json.loads((folder / "chromium" / f"{HOST_NAME}.json").read_text())
    firefox = json.loads((folder / "firefox" / f"{HOST_NAME}.json").read_text())
    assert chromium["allowed_origins"] == [chromium_origin(chromium_id())]
    assert firefox["allowed_extensions"] == [GECKO_ID]
    assert chromium["name"] == firefox["name"] == HOST_NAME
    assert Path(chromium["path"]).is_absolute() and chromium["type"] == "stdio"


def test_roundcube_address_is_built_in(tmp_path: Path) -> None:
    """build.py --roundcube: the Roundcube adapter in every frame of that address (its path kept),
    and only that origin (besides Gmail) may frame the secure editor and viewer."""
    out = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "build.py"),
            "--out",
            str(out),
            "--roundcube",
            "https://Mail.Example.org/roundcube/",
        ],
        check=True,
    )
    for manifest in (
        json.loads((out / "chromium" / "manifest.json").read_text()),
        json.loads(zipfile.ZipFile(out / "firefox.xpi").read("manifest.json")),
    ):
        gmail, roundcube = manifest["content_scripts"]
        assert gmail["matches"] == ["https://mail.google.com/*"]
        assert gmail["js"] == [
            "shared/ask.js",
            "content/adapters/addresses.js",
            "content/adapters/gmail.js",
            "content/webmail.js",
        ]
        assert roundcube == {
            "matches": ["https://mail.example.org/roundcube/*"],
            "js": [
                "shared/ask.js",
                "content/adapters/addresses.js",
                "content/adapters/roundcube.js",
                "content/webmail.js",
            ],
            "run_at": "document_idle",
            "all_frames": True,
        }
        (frames,) = manifest["web_accessible_resources"]
        assert frames["matches"] == ["https://mail.google.com/*", "https://mail.example.org/*"]


@pytest.mark.parametrize(
    "url", ["http://webmail.example.org/", "https://*.example.org/", "https://x.org/?a=1", "nope"]
)
def test_an_unfit_roundcube_address_is_refused_in_words(tmp_path: Path, url: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "build.py"), "--out", str(tmp_path), "--roundcube", url],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and f"{url}: " in done.stderr, done.stderr
    assert not (tmp_path / "chromium").exists()
