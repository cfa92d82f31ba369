"""The deploy hook of the tests: stop the running app version and start another (idempotent).

``python switch.py FOLDER VERSION``: FOLDER holds port, dsn and app.pid. With FOLDER/hang present the
hook then hangs (writing its pid to FOLDER/hook.pid), for the kill -9 tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

folder, version = Path(sys.argv[1]), sys.argv[2]
pidfile = folder / "app.pid"
if pidfile.exists():
    try:
        os.kill(int(pidfile.read_text()), signal.SIGTERM)
        time.sleep(0.2)
    except ProcessLookupError:
        pass
with open(folder / f"app-{version}.log", "a") as log:
    app = subprocess.Popen([sys.executable, str(Path(__file__).with_name("app.py")), (folder / "port").read_text(),
                            version, (folder / "dsn").read_text()], stdout=log, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, start_new_session=True)
pidfile.write_text(str(app.pid))
(folder / "version").write_text(version)
print(f"switched to {version} (pid {app.pid})")
if (folder / "hang").exists():
    (folder / "hook.pid").write_text(str(os.getpid()))
    time.sleep(120)
