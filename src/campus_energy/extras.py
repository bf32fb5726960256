"""Which extra of `pyproject.toml` installs which optional package, and the error that names it.

The core install runs the command line, the configuration checks, `init`, `profiles`,
`doctor`, `read`, `scan` and `simulate`; each service needs its role's extra. A command whose
package is missing says which extra to install instead of failing with a traceback.
"""

from __future__ import annotations

import importlib.util

from campus_energy.errors import MissingExtraError

# An optional package (its top-level import name) -> the role that needs it; the window
# stores' drivers are named for their store and come with the bridge's or the API's extra.
NEEDED_BY: dict[str, str] = {
    "aiomqtt": "logger",
    "paho": "logger",
    "prometheus_client": "logger",
    "flask": "api",
    "werkzeug": "api",
    "gunicorn": "api",
    "openpyxl": "api",
    "streamlit": "dashboard",
    "pandas": "dashboard",
    "altair": "dashboard",
    "matplotlib": "alerts",
    "amqtt": "demo",
    "psutil": "demo",
    "psycopg": "postgres",
    "google": "firestore",
}
# A window store -> the module its driver provides.
STORE_DRIVERS: dict[str, str] = {"postgres": "psycopg", "firestore": "google.cloud.firestore"}
# A command -> its role's extra (the other commands need only the core).
ROLE_OF_COMMAND: dict[str, str] = {
    "logger": "logger",
    "bridge": "bridge",
    "reconcile": "bridge",
    "api": "api",
    "dashboard": "dashboard",
    "demo": "demo",
    "alerts": "alerts",
    "report": "alerts",
}
STORE_ROLES = ("bridge", "api", "alerts")  # the roles that talk to a window store


def extra_for(module: str, command: str | None = None) -> str | None:
    """The extra that installs `module` for `command`; None when it is no optional package."""
    needed_by = NEEDED_BY.get(module.partition(".")[0])
    if needed_by is None:
        return None
    role = ROLE_OF_COMMAND.get(command or "")
    if needed_by in STORE_DRIVERS:
        return f"{role if role in STORE_ROLES else 'bridge'}-{needed_by}"
    return role or needed_by


def missing(exc: ModuleNotFoundError, command: str | None = None) -> MissingExtraError | None:
    """What to tell a person about `exc`; None when the module is no optional package of ours
    (a bug, to be reported as it is)."""
    module = exc.name or ""
    extra = extra_for(module, command)
    if extra is None:
        return None
    return MissingExtraError(module.partition(".")[0], extra, command)


def require(module: str, command: str | None = None) -> None:
    """Raise MissingExtraError unless `module` can be imported (it is not imported here)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        found = False
    if not found:
        extra = extra_for(module, command)
        if extra is None:
            raise ValueError(f"{module} is no optional package of campus-energy")
        raise MissingExtraError(module.partition(".")[0], extra, command)


def require_store(store: str, command: str) -> None:
    """Raise MissingExtraError unless the driver of window store `store` is installed."""
    driver = STORE_DRIVERS.get(store)
    if driver is not None:
        require(driver, command)
