"""The browsers autosmime supports and, per platform, where each looks for native host manifests.

One declarative table (BROWSERS) drives install, uninstall and doctor. Every location is computed
by pure functions of (browser, platform, Roots), so tests check Linux, macOS and Windows paths on
any machine; only Roots.current() and find() look at the running system.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from native_host.transport.browser_ids import HOST_NAME

CHROMIUM = "chromium"
FIREFOX = "firefox"
PLATFORMS = ("linux", "darwin", "win32")
MANIFEST_FILE = f"{HOST_NAME}.json"


@dataclass(frozen=True)
class Roots:
    """The per-user folders that browser locations hang off; PureWindowsPath values work too."""

    home: PurePath
    config_home: PurePath  # XDG config root (Linux)
    data_dir: PurePath  # autosmime's own folder (Windows manifests live below it)
    local_appdata: PurePath | None = None  # %LOCALAPPDATA% (Windows)
    appdata: PurePath | None = None  # %APPDATA% (Windows)
    program_dirs: tuple[PurePath, ...] = field(default=())  # %ProgramFiles% and friends

    @classmethod
    def current(cls) -> Roots:
        """The running user's folders, from native_host.infrastructure.paths and the environment."""
        from native_host.infrastructure import paths

        env = os.environ
        home = Path(env.get("HOME") or Path.home())
        programs = [env.get(name) for name in ("ProgramFiles", "ProgramFiles(x86)", "ProgramW6432")]
        return cls(
            home=home,
            config_home=paths.config_home(),
            data_dir=paths.data_dir(),
            local_appdata=Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local"),
            appdata=Path(env.get("APPDATA") or home / "AppData" / "Roaming"),
            program_dirs=tuple(dict.fromkeys(Path(p) for p in programs if p)),
        )

    def base(self, name: str) -> PurePath:
        """Resolve a base name used in the BROWSERS table to a folder."""
        if name == "home":
            return self.home
        if name == "config":
            return self.config_home
        if name == "app_support":
            return self.home / "Library" / "Application Support"
        if name == "local_appdata":
            return self.local_appdata or self.home / "AppData" / "Local"
        if name == "appdata":
            return self.appdata or self.home / "AppData" / "Roaming"
        raise ValueError(f"unknown base folder {name!r}")


# A location: (base name for Roots.base, path below it with "/" separators).
Location = tuple[str, str]


@dataclass(frozen=True)
class Browser:
    """One supported browser: where its profile lives, where it reads manifests, how to spot it."""

    name: str
    label: str
    family: str  # CHROMIUM or FIREFOX
    profile: Mapping[str, Location]  # platform -> per-user profile/config folder
    hosts_dir: Mapping[str, Location]  # platform -> manifest folder (not win32: registry)
    registry_base: str  # under HKEY_CURRENT_USER; "\NativeMessagingHosts\<host>" is appended
    commands: tuple[str, ...] = ()  # program names looked up on PATH (Linux)
    mac_app: str = ""  # bundle name in /Applications or ~/Applications
    windows_exe: tuple[Location, ...] = ()  # ("programs" | "local_appdata", relative exe path)


BROWSERS: tuple[Browser, ...] = (
    Browser(
        name="chrome",
        label="Google Chrome",
        family=CHROMIUM,
        profile={
            "linux": ("config", "google-chrome"),
            "darwin": ("app_support", "Google/Chrome"),
            "win32": ("local_appdata", "Google/Chrome/User Data"),
        },
        hosts_dir={
            "linux": ("config", "google-chrome/NativeMessagingHosts"),
            "darwin": ("app_support", "Google/Chrome/NativeMessagingHosts"),
        },
        registry_base=r"Software\Google\Chrome",
        commands=("google-chrome", "google-chrome-stable"),
        mac_app="Google Chrome.app",
        windows_exe=(
            ("programs", "Google/Chrome/Application/chrome.exe"),
            ("local_appdata", "Google/Chrome/Application/chrome.exe"),
        ),
    ),
    Browser(
        name="chromium",
        label="Chromium",
        family=CHROMIUM,
        profile={
            "linux": ("config", "chromium"),
            "darwin": ("app_support", "Chromium"),
            "win32": ("local_appdata", "Chromium/User Data"),
        },
        hosts_dir={
            "linux": ("config", "chromium/NativeMessagingHosts"),
            "darwin": ("app_support", "Chromium/NativeMessagingHosts"),
        },
        registry_base=r"Software\Chromium",
        commands=("chromium", "chromium-browser"),
        mac_app="Chromium.app",
        windows_exe=(("local_appdata", "Chromium/Application/chrome.exe"),),
    ),
    Browser(
        name="edge",
        label="Microsoft Edge",
        family=CHROMIUM,
        profile={
            "linux": ("config", "microsoft-edge"),
            "darwin": ("app_support", "Microsoft Edge"),
            "win32": ("local_appdata", "Microsoft/Edge/User Data"),
        },
        hosts_dir={
            "linux": ("config", "microsoft-edge/NativeMessagingHosts"),
            "darwin": ("app_support", "Microsoft Edge/NativeMessagingHosts"),
        },
        registry_base=r"Software\Microsoft\Edge",
        commands=("microsoft-edge", "microsoft-edge-stable"),
        mac_app="Microsoft Edge.app",
        windows_exe=(("programs", "Microsoft/Edge/Application/msedge.exe"),),
    ),
    Browser(
        name="brave",
        label="Brave",
        family=CHROMIUM,
        profile={
            "linux": ("config", "BraveSoftware/Brave-Browser"),
            "darwin": ("app_support", "BraveSoftware/Brave-Browser"),
            "win32": ("local_appdata", "BraveSoftware/Brave-Browser/User Data"),
        },
        hosts_dir={
            "linux": ("config", "BraveSoftware/Brave-Browser/NativeMessagingHosts"),
            "darwin": ("app_support", "BraveSoftware/Brave-Browser/NativeMessagingHosts"),
        },
        registry_base=r"Software\BraveSoftware\Brave-Browser",
        commands=("brave-browser", "brave"),
        mac_app="Brave Browser.app",
        windows_exe=(
            ("programs", "BraveSoftware/Brave-Browser/Application/brave.exe"),
            ("local_appdata", "BraveSoftware/Brave-Browser/Application/brave.exe"),
        ),
    ),
    Browser(
        name="firefox",
        label="Firefox",
        family=FIREFOX,
        profile={
            "linux": ("home", ".mozilla/firefox"),
            "darwin": ("app_support", "Firefox"),
            "win32": ("appdata", "Mozilla/Firefox"),
        },
        hosts_dir={
            "linux": ("home", ".mozilla/native-messaging-hosts"),
            "darwin": ("app_support", "Mozilla/NativeMessagingHosts"),
        },
        registry_base=r"Software\Mozilla",
        commands=("firefox", "firefox-esr"),
        mac_app="Firefox.app",
        windows_exe=(("programs", "Mozilla Firefox/firefox.exe"),),
    ),
)

NAMES: tuple[str, ...] = tuple(browser.name for browser in BROWSERS)


def get(name: str) -> Browser:
    """The browser called name; KeyError names the supported ones."""
    for browser in BROWSERS:
        if browser.name == name:
            return browser
    raise KeyError(f"unknown browser {name!r}; supported: {', '.join(NAMES)}")


def platform_key(platform: str = sys.platform) -> str:
    """Map sys.platform values onto the table's keys (any Unix that is not macOS acts as Linux)."""
    if platform in ("win32", "cygwin"):
        return "win32"
    if platform == "darwin":
        return "darwin"
    return "linux"


def _resolve(roots: Roots, location: Location) -> PurePath:
    base, relative = location
    return roots.base(base).joinpath(*relative.split("/"))


def manifest_path(browser: Browser, platform: str, roots: Roots) -> PurePath:
    """Where the per-user manifest file goes (on Windows the registry then points at it)."""
    platform = platform_key(platform)
    if platform == "win32":
        return roots.data_dir / "manifests" / browser.name / MANIFEST_FILE
    return _resolve(roots, browser.hosts_dir[platform]) / MANIFEST_FILE


def user_data_dir_manifest(user_data_dir: PurePath) -> PurePath:
    """Chromium started with --user-data-dir=DIR reads manifests from DIR/NativeMessagingHosts."""
    return user_data_dir / "NativeMessagingHosts" / MANIFEST_FILE


def registry_key(browser: Browser, platform: str) -> str | None:
    """The HKEY_CURRENT_USER key whose default value names the manifest (Windows only)."""
    if platform_key(platform) != "win32":
        return None
    return rf"{browser.registry_base}\NativeMessagingHosts\{HOST_NAME}"


def profile_dir(browser: Browser, platform: str, roots: Roots) -> PurePath:
    """The browser's per-user profile/config folder; it exists once the browser has run."""
    return _resolve(roots, browser.profile[platform_key(platform)])


def program_locations(browser: Browser, platform: str, roots: Roots) -> list[PurePath]:
    """Fixed places the browser's program is usually installed (macOS and Windows)."""
    platform = platform_key(platform)
    if platform == "darwin" and browser.mac_app:
        return [
            type(roots.home)("/Applications") / browser.mac_app,
            roots.home / "Applications" / browser.mac_app,
        ]
    if platform == "win32":
        found: list[PurePath] = []
        for base, relative in browser.windows_exe:
            bases = roots.program_dirs if base == "programs" else (roots.base(base),)
            found.extend(folder.joinpath(*relative.split("/")) for folder in bases)
        return found
    return []


def _which(name: str, search_path: str | None) -> str | None:
    return shutil.which(name, path=search_path)


def find(
    browser: Browser,
    platform: str,
    roots: Roots,
    search_path: str | None,
    exists: Callable[[PurePath], bool] = os.path.exists,
    which: Callable[[str, str | None], str | None] = _which,
) -> str | None:
    """Say why we think browser is installed for this user (a path), or None if it is not.

    Evidence is its profile folder, a program on search_path (Linux), or its program in the
    usual place (macOS, Windows). exists and which are parameters so tests need no real browser.
    """
    profile = profile_dir(browser, platform, roots)
    if exists(profile):
        return str(profile)
    if platform_key(platform) == "linux" and search_path:
        for command in browser.commands:
            located = which(command, search_path)
            if located:
                return located
    for program in program_locations(browser, platform, roots):
        if exists(program):
            return str(program)
    return None


def detect(
    platform: str = sys.platform, roots: Roots | None = None, env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Browsers found for the running user: name -> evidence (a path), in table order.

    env is only read for PATH; folders come from roots (by default, the running user's).
    """
    env = os.environ if env is None else env
    roots = Roots.current() if roots is None else roots
    search_path = env.get("PATH", os.defpath)
    found: dict[str, str] = {}
    for browser in BROWSERS:
        evidence = find(browser, platform, roots, search_path)
        if evidence:
            found[browser.name] = evidence
    return found
