"""The project's exception types.

Adapters translate every failure of the libraries they wrap into one of these;
the CLI and the API turn them into words and exit codes or HTTP statuses.
"""

from __future__ import annotations

# What a command's exit status means, for every command of the command line.
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class CampusEnergyError(Exception):
    """Base of every error this project raises on purpose."""


class UsageError(CampusEnergyError):
    """The command line itself is wrong (exit 2)."""


class ConfigError(CampusEnergyError):
    """The configuration is invalid. `problems` holds `(key path, message)` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{key}: {message}" for key, message in self.problems))

    @classmethod
    def single(cls, key: str, message: str) -> ConfigError:
        return cls([(key, message)])


class ProfileError(CampusEnergyError):
    """A meter profile file is invalid or a profile name is unknown."""


class ModbusError(CampusEnergyError):
    """A Modbus request failed. Carries where: bus, unit, function, address, count.

    `summary` names the bus, the unit and the kind of failure only: it stays the
    same from one failed attempt to the next (a status, not a log line).
    """

    reason = "request failed"

    def __init__(
        self,
        bus: str,
        unit: int,
        *,
        function: int | None = None,
        address: int | None = None,
        count: int | None = None,
        detail: str = "",
    ) -> None:
        self.bus = bus
        self.unit = unit
        self.function = function
        self.address = address
        self.count = count
        self.detail = detail
        where = f"bus {bus!r} unit {unit}"
        if function is not None and address is not None:
            where += f" FC{function:02d} address {address}"
            if count is not None:
                where += f" count {count}"
        text = f"{where}: {self.reason}"
        self.summary = f"bus {bus!r} unit {unit}: {self.reason}"
        super().__init__(f"{text} ({detail})" if detail else text)


class ModbusTimeoutError(ModbusError):
    """The device did not answer within the bus timeout."""

    reason = "no response (timeout)"


class ModbusFrameError(ModbusError):
    """Bytes arrived but did not form a valid frame (CRC error, garbled or truncated frame)."""

    reason = "invalid response frame"


class ModbusExceptionResponseError(ModbusError):
    """The device answered with a Modbus exception code."""

    reason = "exception response"

    def __init__(
        self,
        bus: str,
        unit: int,
        *,
        code: int,
        function: int | None = None,
        address: int | None = None,
        count: int | None = None,
    ) -> None:
        self.code = code
        name = EXCEPTION_CODE_NAMES.get(code, "unknown")
        super().__init__(
            bus,
            unit,
            function=function,
            address=address,
            count=count,
            detail=f"code {code}: {name}",
        )
        self.summary += f" (code {code}: {name})"


class ModbusFieldRefusedError(ModbusExceptionResponseError):
    """The device refuses (exception 2) the registers of a field every reading needs."""

    def __init__(
        self, bus: str, unit: int, *, field: str, function: int, address: int, count: int
    ) -> None:
        super().__init__(bus, unit, code=2, function=function, address=address, count=count)
        self.field = field
        self.summary = (
            f"bus {bus!r} unit {unit}: refuses {field} "
            f"(FC{function:02d} address {address}, code 2: illegal data address)"
        )
        self.args = (f"{self}; {field} is needed for every reading",)


class ModbusConnectionError(ModbusError):
    """The bus could not be opened or the connection was lost."""

    reason = "bus not connected"


EXCEPTION_CODE_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class ServiceError(CampusEnergyError):
    """A service cannot start or run: a port in use, a missing device, an unreachable peer."""


class StoreError(CampusEnergyError):
    """The logger's SQLite store failed (disk full, file locked, corrupt, unwritable)."""


class StoreFullError(StoreError):
    """The logger's store cannot grow: its disk is full (SQLITE_FULL)."""


class StoreBusyError(StoreError):
    """Another process (a running logger, the dashboard) has the store open: no exclusive use."""


class LegacyDataError(CampusEnergyError):
    """A database of the original deployment cannot be read (not SQLite, tables missing)."""


class BrokerError(CampusEnergyError):
    """The MQTT broker is unreachable or refused us."""


class BrokerRefusedError(BrokerError):
    """Nothing accepts connections at the broker's address and port."""


class BrokerAuthError(BrokerError):
    """The broker refused the credentials (bad user name or password, or not authorised)."""


class BrokerTLSError(BrokerError):
    """The TLS handshake with the broker failed (certificate, CA, or a port without TLS)."""


class BrokerTimeoutError(BrokerError):
    """The broker did not answer in time."""


class SpoolError(CampusEnergyError):
    """The bridge's spool (its own SQLite file) failed."""


class AlertBookError(CampusEnergyError):
    """The book of alerts (`alerts.state_path`) cannot be opened, read or written."""


class SinkError(CampusEnergyError):
    """A window sink (SQLite, PostgreSQL, Firestore) is unreachable or refused a write."""


class SourceError(CampusEnergyError):
    """The API cannot read its data source (the windows sink)."""


class MissingExtraError(CampusEnergyError):
    """An optional package a command needs is not installed; the message names the extra
    of `pyproject.toml` that installs it (exit 1)."""

    def __init__(self, package: str, extra: str, command: str | None = None) -> None:
        self.package = package
        self.extra = extra
        self.install = f"pip install 'campus-energy[{extra}]'"
        who = f"{command} needs {package}, which" if command else f"{package}"
        super().__init__(
            f"{who} is not installed: {self.install} "
            f"(from a checkout: pip install -c requirements-runtime.lock '.[{extra}]')"
        )


class InstallError(CampusEnergyError):
    """Installing the service units failed (no program to run, a folder that cannot be written)."""
