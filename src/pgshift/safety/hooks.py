"""The application hooks of a restore and a check: stop/start commands, health URL, version.

Commands are argv lists run without a shell (no quoting surprises, no injection); their output
is logged line by line under the ``pgshift.hooks`` logger and kept in the result.
"""

from __future__ import annotations

import logging
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("pgshift.hooks")


@dataclass
class HookResult:
    name: str
    argv: list[str]
    returncode: int
    output: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        tail = f": {' | '.join(self.output[-3:])}" if self.output and not self.ok else ""
        return f"{self.name} hook {' '.join(self.argv)} exited with {self.returncode}{tail}"


def run_hook(name: str, argv: list[str], *, timeout: float = 300.0) -> HookResult:
    """Run ``argv`` (no shell), logging its combined output; never raises on failure."""
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
        code, text = proc.returncode, proc.stdout or ""
    except subprocess.TimeoutExpired as exc:
        out = exc.output
        code, text = 124, (out.decode(errors="replace") if isinstance(out, bytes) else out or "")
        text += f"\n(timed out after {timeout:.0f}s)"
    except OSError as exc:
        code, text = 127, f"could not start: {exc}"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for line in lines:
        log.info("%s: %s", name, line)
    result = HookResult(name, list(argv), code, lines, time.monotonic() - started)
    log.info("%s hook finished with exit code %s in %.1fs", name, code, result.seconds)
    return result


@dataclass
class HealthResult:
    url: str
    ok: bool
    status: int | None
    seconds: float
    error: str | None = None


def probe(url: str, timeout: float = 5.0) -> tuple[int | None, str | None]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), None
    except urllib.error.HTTPError as exc:
        return int(exc.code), f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, str(getattr(exc, "reason", exc))


def poll_health(url: str, timeout: float, interval: float = 0.5) -> HealthResult:
    """Ask ``url`` until it answers 2xx or ``timeout`` seconds pass."""
    started = time.monotonic()
    while True:
        status, error = probe(url, timeout=min(5.0, max(timeout, 0.5)))
        elapsed = time.monotonic() - started
        if status is not None and 200 <= status < 300:
            return HealthResult(url, True, status, elapsed)
        if elapsed >= timeout:
            return HealthResult(url, False, status, elapsed, error or f"HTTP {status}")
        time.sleep(interval)


def app_version(command: list[str], file: Path | None) -> tuple[str | None, str]:
    """(version, where from) from the configured command or file; (None, reason) otherwise."""
    if command:
        result = run_hook("version", command, timeout=30)
        if result.ok and result.output:
            return result.output[0].strip(), " ".join(command)
        return None, result.describe()
    if file is not None:
        try:
            text = file.read_text().strip()
        except OSError as exc:
            return None, f"{file}: {exc.strerror}"
        return (text.splitlines()[0].strip() if text else None), str(file)
    return None, "not configured (app.version_command / app.version_file)"
