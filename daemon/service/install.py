"""`dfwatch service install`: dfwatch as a systemd service, from a checkout or a `pip install`.

Creates the `dfwatch` system user (in groups video and render where the host has them),
/etc/dfwatch/dfwatch.yaml (the default configuration with the service's runtime directory, if
missing; always 0640 root:dfwatch: it may hold camera passwords), /usr/share/doc/dfwatch (the
README, and docs/ from a checkout), the units dfwatch.service and the shard template
dfwatch@.service (package data, daemon/service/systemd/) naming this dfwatch executable, and enables
the service; it starts it only once model.bundle is set. The unit's ProtectHome=yes hides
/home, /root and /run/user from the service: an executable or bundle there is refused with one
line, at install, not as a service that cannot start. `--dry-run` prints what it would do.
scripts/install-service.sh runs this for the checkout's .venv.
"""
from __future__ import annotations

import grp
import os
import shutil
import subprocess
import sys
from importlib import metadata, resources
from pathlib import Path

from engines.errors import DfwatchError

UNITS = ("dfwatch.service", "dfwatch@.service")
SYSTEMD = Path("/etc/systemd/system")
DOCS = Path("/usr/share/doc/dfwatch")
HIDDEN = ("/home", "/root", "/run/user")  # what ProtectHome=yes hides from the service
CHECKOUT = Path(__file__).resolve().parents[2]


class ServiceError(DfwatchError):
    pass


def dfwatch_executable() -> Path:
    """The dfwatch console script beside this interpreter (a venv's bin/, or a prefix's)."""
    candidate = Path(sys.executable).parent / "dfwatch"
    found = candidate if candidate.exists() else Path(shutil.which("dfwatch") or candidate)
    return found.absolute()


def hidden_by_protect_home(path: Path) -> bool:
    resolved = str(path.resolve())
    return any(resolved == h or resolved.startswith(h + "/") for h in HIDDEN)


def unit_text(name: str, dfwatch: Path, config: Path, allow_home: bool = False) -> str:
    template = resources.files("daemon.service").joinpath("systemd", name).read_text()
    text = template.replace("@DFWATCH@", str(dfwatch)).replace("@CONFIG@", str(config))
    return text.replace("\nProtectHome=yes\n", "\nProtectHome=read-only\n") if allow_home else text


def hidden_paths(dfwatch: Path, bundle: str | None) -> list[tuple[str, Path]]:
    """What the service needs that ProtectHome=yes would hide: the executable, its interpreter
    (a pyenv Python lives in a home), the bundle."""
    return [(what, path) for what, path in (("dfwatch", dfwatch), ("its Python", Path(sys.executable).resolve()),
                                            ("model.bundle", Path(bundle) if bundle else None))
            if path is not None and hidden_by_protect_home(path)]


def check_reachable(dfwatch: Path, bundle: str | None, allow_home: bool) -> None:
    hidden = hidden_paths(dfwatch, bundle)
    if hidden and not allow_home:
        where = " and ".join(f"{what} at {path}" for what, path in hidden)
        raise ServiceError(f"{where}: under {', '.join(HIDDEN)}, which the unit's ProtectHome=yes hides "
                           "from the service: install dfwatch elsewhere (e.g. python3 -m venv /opt/dfwatch; "
                           "/opt/dfwatch/bin/pip install .) and keep bundles in /var/lib/dfwatch, or pass "
                           "--allow-home for ProtectHome=read-only (user dfwatch must be able to read it)")


class Installer:
    def __init__(self, config: Path, dry_run: bool, allow_home: bool = False, out=sys.stdout):
        self.config, self.dry, self.allow_home, self.out = config, dry_run, allow_home, out

    def run(self, *argv: str) -> None:
        if self.dry:
            print("+ " + " ".join(argv), file=self.out)
        else:
            subprocess.run(argv, check=True)

    def write(self, path: Path, text: str, show: bool = False) -> None:
        if self.dry:
            print(f"+ write {path}" + (":\n" + text if show else ""), file=self.out)
        else:
            path.write_text(text)

    def install(self) -> int:
        if not self.dry and os.geteuid() != 0:
            raise ServiceError("run as root (sudo dfwatch service install)")
        if shutil.which("systemctl") is None:
            raise ServiceError("systemctl not found: this needs systemd")
        dfwatch = dfwatch_executable()
        bundle = self._bundle()
        check_reachable(dfwatch, bundle, self.allow_home)
        self._user()
        self._config(dfwatch)
        self._docs()
        for i, name in enumerate(UNITS):
            self.write(SYSTEMD / name, unit_text(name, dfwatch, self.config, self.allow_home), show=i == 0)
        self.run(str(dfwatch), "config", "check", str(self.config))
        self.run("systemctl", "daemon-reload")
        return self._enable(dfwatch, bundle)

    def _bundle(self) -> str | None:
        from engines.config import load_config

        return load_config(self.config).model.bundle if self.config.is_file() else None

    def _user(self) -> None:
        try:
            import pwd

            pwd.getpwnam("dfwatch")
        except KeyError:
            self.run("useradd", "--system", "--no-create-home", "--home-dir", "/var/lib/dfwatch", "--shell",
                     "/usr/sbin/nologin", "dfwatch")
        for group in ("video", "render"):  # webcams (/dev/video*) and GPUs (/dev/dri/render*)
            try:
                grp.getgrnam(group)
            except KeyError:
                continue
            self.run("usermod", "-aG", group, "dfwatch")

    def _config(self, dfwatch: Path) -> None:
        from engines.config import DEFAULT_CONFIG_FILE

        self.run("install", "-d", "-m", "0755", str(self.config.parent))
        if not self.config.exists():  # the service's sockets live in its RuntimeDirectory, /run/dfwatch
            text = DEFAULT_CONFIG_FILE.read_text().replace("  runtime_dir: null ", "  runtime_dir: /run/dfwatch ")
            self.write(self.config, text)
        self.run("chown", "root:dfwatch", str(self.config))  # camera passwords: root and the service only
        self.run("chmod", "0640", str(self.config))

    def _docs(self) -> None:
        self.run("install", "-d", "-m", "0755", str(DOCS))  # what the unit's Documentation= names
        docs = [CHECKOUT / "README.md", *sorted((CHECKOUT / "docs").glob("*.md"))]
        if all(p.is_file() for p in docs[:1]):
            self.run("install", "-m", "0644", *[str(p) for p in docs], f"{DOCS}/")
        else:  # a pip install: the README travels in the package's metadata
            self.write(DOCS / "README.md", metadata.metadata("dfwatch").get_payload() or "")

    def _enable(self, dfwatch: Path, bundle: str | None) -> int:
        if bundle:
            self.run("systemctl", "enable", "--now", "dfwatch.service")
            print("dfwatch service: installed and started; follow it with: journalctl -u dfwatch -f", file=self.out)
        else:  # started without a bundle it would fail at once, again and again
            self.run("systemctl", "enable", "dfwatch.service")
            print(f"dfwatch service: installed and enabled, NOT started: model.bundle is not set in {self.config}.\n"
                  "  Put a bundle where user dfwatch can read it (e.g. /var/lib/dfwatch/bundle), set model.bundle\n"
                  f"  and streams in {self.config}, then: systemctl start dfwatch", file=self.out)
        print(f"  verdicts: {dfwatch} watch --config {self.config}   (as root or a member of group dfwatch)",
              file=self.out)
        return 0
