"""The certificates and settings page and the popup with everything real: bob's browser profile
is enrolled by the real host against `autosmime pki serve` (RFC 8823 mail on the real stack);
the page lists both certificates, exports PKCS#12 files that OpenSSL opens with the password,
keeps the preferred suite, renews, and shows host errors as sentences."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.browser import service_worker
from harness.extension_ui import configure_extension, extension_browser, page_url, screenshot
from harness.mail import MailStack
from harness.pki_service import PkiServe, forget_backups, mail_urls
from playwright.sync_api import expect

pytestmark = pytest.mark.mail

BOB = "bob@example.test"
ROOT = Path(__file__).resolve().parents[2]
ENROLL_TIMEOUT_MS = 120_000
EXPORT_PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def pki(mail_stack: MailStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PkiServe]:
    with PkiServe(mail_stack, tmp_path_factory.mktemp("pki")) as service:
        yield service


def host_command(context: Any, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The real `autosmime` command in the browser profile's environment (same host state)."""
    return subprocess.run(
        [sys.executable, "-m", "native_host.cli", *args],
        input=stdin,
        env=context.autosmime_profile.env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        check=False,
    )


@pytest.fixture
def bob(
    playwright: Any, mail_stack: MailStack, pki: PkiServe, extension_dir: Path, tmp_path: Path
) -> Iterator[Any]:
    """Bob's browser, his account set up and enrolled by the host (as onboarding would), with
    an RSA key so that the legacy PKCS#12 (3DES, RSA only) can hold it."""
    forget_backups(mail_stack, BOB)
    with extension_browser(playwright, tmp_path / "bob", extension_dir) as context:
        urls = mail_urls(mail_stack, BOB)
        added = host_command(
            context, "account", "add", BOB, "--imap", urls["imapUrl"], "--smtp", urls["smtpUrl"],
            "--ca-file", urls["caFile"], "--pki", pki.url, "--pki-roots", str(pki.roots_file),
            "--password-stdin", stdin=mail_stack.users[BOB] + "\n",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        enrolled = host_command(context, "--json", "enroll", "--intl-key", "rsa-3072")
        assert enrolled.returncode == 0, enrolled.stderr
        context.recovery_code = json.loads(enrolled.stdout)["recoveryCode"]
        configure_extension(context, pki.extension_config(BOB))
        yield context


def open_options(context: Any) -> Any:
    page = context.new_page()
    page.goto(page_url("ui/options.html"))
    expect(page.locator("body")).to_have_attribute("data-loaded", "true")
    return page


def openssl_reads(path: Path, password: str) -> str:
    done = subprocess.run(
        ["openssl", "pkcs12", "-info", "-in", str(path), "-passin", f"pass:{password}",
         "-nodes"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def export(page: Any, flavour_label: str, tmp_path: Path) -> Path:
    page.get_by_label(flavour_label).check()
    page.get_by_label("Password for the file").fill(EXPORT_PASSWORD)
    page.get_by_label("Type the password again").fill(EXPORT_PASSWORD)
    page.get_by_role("button", name="Download the file").click()
    # The page starts the download itself and keeps a link to save the file again; Chromium
    # lets a page start one download on its own, more only from a click, so the test clicks.
    link = page.get_by_role("link", name="Save bob@example.test")
    expect(link).to_be_visible(timeout=ENROLL_TIMEOUT_MS)
    with page.expect_download() as download_info:
        link.click()
    download = download_info.value
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    return target


def test_certificates_export_and_preferred_suite(bob: Any, tmp_path: Path) -> None:
    page = open_options(bob)
    rows = page.locator("#certs tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="International")).to_contain_text("In use")
    expect(rows.filter(has_text="SM2")).to_contain_text("In use")
    expect(rows.first).to_contain_text("Backed up in your mailbox")
    assert {r.get_attribute("data-suite") for r in rows.all()} == {"intl", "sm"}
    for row in rows.all():  # a real date, not a placeholder
        assert row.locator("td").nth(2).inner_text() != "—"
    screenshot(page, "options-1-certificates")

    modern = export(page, "Modern (current Outlook, Thunderbird, Apple Mail)", tmp_path)
    assert modern.name == f"{BOB}.p12"
    info = openssl_reads(modern, EXPORT_PASSWORD)
    assert info.count("BEGIN CERTIFICATE") >= 2 and "PRIVATE KEY" in info
    expect(page.get_by_role("status")).to_contain_text("The file is downloaded with 2 keys")
    legacy = export(page, "Compatible (older Outlook and gpgsm; international keys only)", tmp_path)
    assert legacy.name == f"{BOB}-legacy.p12"
    assert "PRIVATE KEY" in openssl_reads(legacy, EXPORT_PASSWORD)
    expect(page.get_by_role("status")).to_contain_text("with 1 key (1 left out")

    # Mismatched passwords: a sentence, nothing downloaded.
    page.get_by_label("Password for the file").fill("one")
    page.get_by_label("Type the password again").fill("two")
    page.get_by_role("button", name="Download the file").click()
    expect(page.get_by_role("alert")).to_contain_text("The two passwords are not the same.")

    page.get_by_label("Chinese national standard (SM2/SM3/SM4)").check()
    expect(page.get_by_role("status")).to_contain_text("Chinese national standard")
    stored = service_worker(bob).evaluate(
        "async () => (await chrome.storage.local.get('preferences')).preferences"
    )
    assert stored == {"suite": "sm"}
    page.reload()
    expect(page.get_by_label("Chinese national standard (SM2/SM3/SM4)")).to_be_checked()

    # Encrypted subjects: hidden by default; the choice is kept by the host with the account.
    hide = page.get_by_label("Hide the subject of encrypted mail")
    expect(hide).to_be_enabled()
    expect(hide).to_be_checked()
    expect(page.locator("#hide-subject-hint")).to_contain_text("“[...]” as its subject")
    hide.uncheck()
    expect(page.get_by_role("status")).to_contain_text("will show its subject in inbox lists")
    listed = host_command(bob, "--json", "account", "list")
    assert listed.returncode == 0, listed.stderr
    [account] = json.loads(listed.stdout)["accounts"]
    assert account["hideSubject"] is False
    page.reload()
    expect(hide).to_be_enabled()
    expect(hide).not_to_be_checked()


def test_renew_adds_new_certificates_and_keeps_the_old(bob: Any) -> None:
    page = open_options(bob)
    rows = page.locator("#certs tbody tr")
    expect(rows).to_have_count(2)
    before = {r.get_attribute("data-key-id") for r in rows.all()}
    page.get_by_role("button", name="Renew my certificates").click()
    # The code is not kept on this device: the host asks for it, the page says so in words.
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Your recovery code is needed for this.", timeout=60_000)
    expect(alert).to_contain_text("nothing was changed")
    expect(rows).to_have_count(2)
    page.get_by_role("textbox", name="Recovery code").fill(bob.recovery_code)
    page.get_by_role("button", name="Renew my certificates").click()
    expect(page.get_by_role("status")).to_contain_text(
        "New certificates are ready", timeout=ENROLL_TIMEOUT_MS
    )
    expect(rows).to_have_count(4)
    statuses = {r.get_attribute("data-key-id"): r.get_attribute("data-status") for r in rows.all()}
    assert {statuses[k] for k in before} == {"superseded"}
    assert sorted(s for k, s in statuses.items() if k not in before) == ["current", "current"]
    screenshot(page, "options-2-renewed")


def test_the_worker_checks_for_renewal_daily(bob: Any) -> None:
    """A daily alarm asks the host to renew every account; the report is kept for the popup.
    bob's certificates are new, so the check renews nothing and reports no problem."""
    worker = service_worker(bob)
    alarm = worker.evaluate("() => chrome.alarms.get('autosmime.renew')")
    assert alarm is not None and alarm["periodInMinutes"] == 24 * 60, alarm
    report = worker.evaluate("() => globalThis.autosmime.renewNow()")
    assert report["results"] == [{"address": BOB, "renewed": False}], report
    stored = worker.evaluate("async () => (await chrome.storage.local.get('renewal')).renewal")
    assert stored == report


def test_popup_status_and_host_errors_in_words(bob: Any) -> None:
    popup = bob.new_page()
    popup.goto(page_url("ui/popup.html"))
    expect(popup.locator("#status")).to_have_attribute("data-state", "ok")
    expect(popup.locator("#headline")).to_have_text(f"Secure mail is on for {BOB}.")
    expect(popup.locator("#details")).to_contain_text("2 certificates in use")
    expect(popup.locator("#details")).to_contain_text("backed up in your mailbox")
    screenshot(popup, "options-3-popup")

    # A host error: the export of a profile without keys (the account's keys asked for by id).
    page = open_options(bob)
    answer = page.evaluate(
        """async () => {
            const { longRequest } = await import('./common.js');
            const { errorSentence } = await import('./messages.js');
            try {
                await longRequest('keys.export', { password: 'x', keyIds: [] });
                return null;
            } catch (error) {
                return { code: error.code, text: errorSentence(error) };
            }
        }"""
    )
    assert answer is not None and answer["code"] == "not_configured", answer
    assert answer["text"].startswith("Setup is not finished yet.")
    assert answer["text"].endswith("Open the setup page and finish the steps there.")


def test_importing_a_certificate_from_another_program(bob: Any, tmp_path: Path) -> None:
    """Bring your own certificate from the options page: a PKCS#12 file from a commercial CA
    becomes bob's international key, backed up under his recovery code (asked for, since he
    did not keep it on this device), listed with where it came from, and not published."""
    from harness import pki as test_pki

    from shared_pki import pkcs12

    party = (
        test_pki.root("A commercial root")
        .intermediate("Commercial S/MIME CA")
        .smime(BOB, "rsa2048")
    )
    entry = pkcs12.Pkcs12Entry(party.key, party.asn1, tuple(party.chain_asn1))
    p12 = tmp_path / "bob-from-outlook.p12"
    p12.write_bytes(pkcs12.build_pfx([entry], "outlook pw", flavour="legacy"))

    page = open_options(bob)
    page.locator("#import-file").set_input_files(str(p12))
    page.get_by_label("The file's password").fill("outlook pw")
    page.get_by_role("button", name="Import").click()
    error = page.locator("#error")
    expect(error).to_contain_text("Your recovery code is needed", timeout=ENROLL_TIMEOUT_MS)
    assert page.locator("#certs tbody tr[data-origin=imported]").count() == 0
    page.get_by_role("textbox", name="Recovery code").last.fill(bob.recovery_code)
    page.get_by_label("The file's password").fill("outlook pw")
    page.get_by_role("button", name="Import").click()
    notice = page.locator("#notice")
    expect(notice).to_contain_text("is now your certificate", timeout=ENROLL_TIMEOUT_MS)
    expect(notice).to_contain_text("does not vouch for its issuer")
    row = page.locator("#certs tbody tr[data-origin=imported]")
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-status", "current")
    expect(row).to_contain_text("Imported (issued by Commercial S/MIME CA)")
    screenshot(page, "options-2-imported")
