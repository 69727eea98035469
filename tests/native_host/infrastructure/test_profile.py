"""infrastructure.profile: which folder, its permissions, the keyring service per profile, and the
master secret kept only in a keyring confined to the test's folder (keyrings.alt's plaintext
file backend under $XDG_DATA_HOME, chosen with the standard PYTHON_KEYRING_BACKEND)."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from native_host.errors import StorageFailed
from native_host.infrastructure import profile as prof

CONFINED = "keyrings.alt.file.PlaintextKeyring"


@pytest.fixture
def keyring_env(home, monkeypatch: pytest.MonkeyPatch):
    """A keyring that writes only below the test's XDG_DATA_HOME; no keyringrc.cfg anywhere."""
    monkeypatch.setenv(prof.ENV_KEYRING, CONFINED)
    monkeypatch.delenv(prof.ENV_PROFILE, raising=False)
    return home


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_option_env_and_default(keyring_env, tmp_path: Path, monkeypatch) -> None:
    assert prof.profile_root() == keyring_env.data / "autosmime"
    monkeypatch.setenv(prof.ENV_PROFILE, str(tmp_path / "from-env"))
    assert prof.profile_root() == tmp_path / "from-env"
    assert prof.profile_root(tmp_path / "option") == tmp_path / "option"  # option wins
    monkeypatch.chdir(tmp_path)
    assert prof.profile_root("relative") == tmp_path / "relative"


def test_layout_and_permissions(keyring_env, tmp_path: Path) -> None:
    profile = prof.open_profile(tmp_path / "alice")
    assert profile.root == tmp_path / "alice"
    for folder in (profile.root, profile.keys_dir, profile.cache_dir, profile.outbox_dir):
        assert folder.is_dir() and _mode(folder) == 0o700, folder
    meta = profile.root / "profile.json"
    assert _mode(meta) == 0o600
    again = prof.open_profile(tmp_path / "alice")
    assert again.profile_id == profile.profile_id  # stable
    assert profile.keyring_service == f"autosmime:{profile.profile_id}"


def test_subfolders_are_tightened(keyring_env, tmp_path: Path) -> None:
    (tmp_path / "p" / "keys").mkdir(parents=True, mode=0o755)
    (tmp_path / "p" / "keys").chmod(0o755)
    profile = prof.open_profile(tmp_path / "p")
    assert _mode(profile.keys_dir) == 0o700


def test_default_profile_follows_xdg(keyring_env) -> None:
    profile = prof.open_profile()
    assert profile.root == keyring_env.data / "autosmime"
    assert (keyring_env.data / "autosmime" / "keys").is_dir()


def test_not_a_profile(keyring_env, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(prof.ProfileError):
        prof.open_profile(tmp_path / "file")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "profile.json").write_text("{not json")
    with pytest.raises(prof.ProfileError, match="profile file"):
        prof.open_profile(broken)


def test_master_secret_lives_in_the_keyring_only(keyring_env, tmp_path: Path) -> None:
    alice = prof.open_profile(tmp_path / "alice")
    bob = prof.open_profile(tmp_path / "bob")
    assert alice.keyring_service != bob.keyring_service
    secret = prof.master_secret(alice)
    assert len(secret) == 32
    assert prof.master_secret(alice) == secret  # made once
    assert prof.master_secret(bob) != secret  # profiles never share secrets
    encoded = base64.b64encode(secret)
    for path in alice.root.rglob("*"):
        if path.is_file():
            assert encoded not in path.read_bytes() and secret not in path.read_bytes()
    # It is in the confined keyring file, under alice's service name.
    keyring_file = keyring_env.data / "python_keyring" / "keyring_pass.cfg"
    assert keyring_file.is_file() and str(keyring_file).startswith(str(keyring_env.root))
    stored = prof.keyring_backend().get_password(alice.keyring_service, "master-secret")
    assert base64.b64decode(stored) == secret


def test_master_secret_is_the_same_in_another_process(keyring_env, tmp_path: Path) -> None:
    profile = prof.open_profile(tmp_path / "p")
    code = (
        "import sys; from native_host.infrastructure import profile as p; "
        "sys.stdout.write(p.master_secret(p.open_profile(sys.argv[1])).hex())"
    )
    env = keyring_env.env(**{prof.ENV_KEYRING: CONFINED, "PATH": os.environ["PATH"]})
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(profile.root)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]  # started together: first use races, and all must agree
    outputs = {run.communicate(timeout=60)[0] for run in runs}
    assert all(run.returncode == 0 for run in runs)
    assert outputs == {prof.master_secret(profile).hex().encode()}


def test_profile_from_env_in_a_subprocess(keyring_env, tmp_path: Path) -> None:
    """A host started by a browser passes no arguments: AUTOSMIME_PROFILE finds the state."""
    chosen = prof.open_profile(tmp_path / "chosen")
    code = "from native_host.infrastructure import profile as p; print(p.open_profile().profile_id)"
    env = keyring_env.env(AUTOSMIME_PROFILE=str(chosen.root), PATH=os.environ["PATH"])
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True)
    assert out.stdout.decode().strip() == chosen.profile_id


@pytest.mark.parametrize(
    "backend",
    ["keyring.backends.fail.Keyring", "keyring.backends.null.Keyring", "no.such.Backend"],
)
def test_no_usable_keyring(keyring_env, tmp_path: Path, monkeypatch, backend: str) -> None:
    monkeypatch.setenv(prof.ENV_KEYRING, backend)
    profile = prof.open_profile(tmp_path / "p")
    with pytest.raises(prof.NoKeyring) as raised:
        prof.master_secret(profile)
    assert "PYTHON_KEYRING_BACKEND" in raised.value.message
    assert raised.value.code == "no_keyring"
    assert not list(profile.root.rglob("*secret*"))


def test_a_file_keyring_is_not_taken_silently(keyring_env, tmp_path: Path, monkeypatch) -> None:
    import keyring
    from keyrings.alt.file import PlaintextKeyring

    monkeypatch.delenv(prof.ENV_KEYRING)
    monkeypatch.setattr(keyring, "get_keyring", lambda: PlaintextKeyring())
    with pytest.raises(prof.NoKeyring, match="PlaintextKeyring"):
        prof.keyring_backend()
    monkeypatch.setenv(prof.ENV_KEYRING, CONFINED)  # chosen explicitly: taken
    assert isinstance(prof.keyring_backend(), PlaintextKeyring)


def test_keyring_config_file_counts_as_a_choice(keyring_env, monkeypatch) -> None:
    from keyrings.alt.file import PlaintextKeyring

    monkeypatch.delenv(prof.ENV_KEYRING)
    config = keyring_env.config / "python_keyring"
    config.mkdir()
    (config / "keyringrc.cfg").write_text(f"[backend]\ndefault-keyring={CONFINED}\n")
    assert isinstance(prof.keyring_backend(), PlaintextKeyring)


def test_a_keyring_that_forgets_is_refused(keyring_env, tmp_path: Path) -> None:
    class Forgetful:
        def get_password(self, service, username):
            return None

        def set_password(self, service, username, password):
            pass

    with pytest.raises(prof.NoKeyring, match="did not keep"):
        prof.master_secret(prof.open_profile(tmp_path / "p"), backend=Forgetful())


def test_a_changed_keyring_entry_is_refused(keyring_env, tmp_path: Path) -> None:
    profile = prof.open_profile(tmp_path / "p")
    backend = prof.keyring_backend()
    backend.set_password(profile.keyring_service, prof.MASTER_SECRET_ENTRY, "short")
    with pytest.raises(prof.KeyringFailed):
        prof.master_secret(profile)


def test_write_private_is_atomic_and_private(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "file"
    prof.write_private(target, b"one")
    assert target.read_bytes() == b"one" and _mode(target) == 0o600

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(prof.os, "replace", crash)
    with pytest.raises(StorageFailed, match="could not write to its profile folder"):
        prof.write_private(target, b"two")
    assert target.read_bytes() == b"one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
