"""A node's BMC over Redfish (DMTF's `redfish` client, extra `.[redfish]`): the chassis' energy.

The open alternative to a licensed wall analyzer (mlcommons/inference#2577). The chassis'
EnvironmentMetrics gives a cumulative energy (`EnergyJoules`, or `EnergykWh`) and its power
(`PowerWatts`); a BMC without them is read through its PowerSubsystem's `EnergykWh` sensor
(`LifetimeReading`). The reading is the whole node's, so the source's role is `total`, as a
wall meter's is. A BMC refreshes its sensors every second or few, so it is polled at 1 Hz and
window energy is interpolated between readings (no tick placement: the counter is not a
fixed-period staircase one can lock to), and a reading stuck while power flows is a fault.

Credentials come from JOULEBENCH_REDFISH_USER / JOULEBENCH_REDFISH_PASSWORD or a file of two
lines (meter.redfish.credentials_file); they are never in the config, the result or the trace.
TLS is verified unless meter.redfish.verify_tls=false; the result records which. (DMTF's client
does not verify TLS unless given a CA file, so joulebench passes one: the user's, or the
certifi bundle requests uses.)
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from harness.errors import MeterError
from harness.meters.counter_device import CounterDevice, CounterReadFailed, CounterSource, Sample
from harness.meters.trust import TrustSettings, check_source

KWH_J = 3.6e6


def load_redfish():
    try:
        import redfish
    except ImportError as exc:
        raise MeterError(
            "Redfish is unavailable: the redfish package is not installed.",
            'pip install -e ".[redfish]" (or pip install redfish).',
        ) from exc
    return redfish


def credentials(path: str | None) -> tuple[str, str, str]:
    """(user, password, where they came from); never logged."""
    if path:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise MeterError(
                f"cannot read the Redfish credentials file {path}.", "fix its path."
            ) from exc
        if len(lines) < 2:
            raise MeterError(
                f"{path} must hold two lines: the user, then the password.", "rewrite it."
            )
        return lines[0].strip(), lines[1].rstrip("\n"), f"file {path}"
    user = os.environ.get("JOULEBENCH_REDFISH_USER")
    password = os.environ.get("JOULEBENCH_REDFISH_PASSWORD")
    if not user or password is None:
        raise MeterError(
            "meter=redfish needs the BMC's credentials.",
            "set JOULEBENCH_REDFISH_USER and JOULEBENCH_REDFISH_PASSWORD, or "
            "meter.redfish.credentials_file=<file of user and password lines>.",
        )
    return user, password, "environment"


def _energy_j(doc: dict) -> tuple[float | None, str | None]:
    """A cumulative energy in joules from an EnvironmentMetrics or Sensor document."""
    for key, scale in (("EnergyJoules", 1.0), ("EnergykWh", KWH_J)):
        value = (doc.get(key) or {}).get("Reading")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value) * scale, key
    value = doc.get("LifetimeReading")  # a Sensor of ReadingType EnergykWh
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        scale = 1.0 if doc.get("ReadingUnits") == "J" else KWH_J
        return float(value) * scale, "LifetimeReading"
    return None, None


class Chassis(CounterDevice):
    joules_per_unit = 1.0  # readings are converted to joules as they are read
    freeze_after_s = 30.0

    def __init__(self, client, path: str, freeze_after_s: float):
        super().__init__("node:bmc")
        self.client, self.path = client, path
        self.freeze_after_s = freeze_after_s
        self.energy_key: str | None = None

    def _get(self, path: str) -> dict:
        try:
            response = self.client.get(path)
        except Exception as exc:  # noqa: BLE001 - RetriesExhausted, a timeout, a reset socket
            raise CounterReadFailed(f"GET {path} failed: {type(exc).__name__}") from exc
        if response.status != 200:
            raise CounterReadFailed(f"GET {path} answered HTTP {response.status}")
        return response.dict

    def _read(self) -> tuple[float, float | None]:
        doc = self._get(self.path)
        joules, self.energy_key = _energy_j(doc)
        if joules is None:
            raise CounterReadFailed(
                f"{self.path} has no EnergyJoules, EnergykWh or LifetimeReading"
            )
        watts = (doc.get("PowerWatts") or {}).get("Reading")
        return joules, float(watts) if isinstance(watts, (int, float)) else None

    def first_counter(self) -> float:
        return self._read()[0]

    def sample(self, clock) -> Sample:
        try:
            joules, watts = self._read()
        except CounterReadFailed as exc:
            return Sample(None, None, clock(), str(exc))
        return Sample(joules, self.classify_watts(watts), clock())


class RedfishSource(CounterSource):
    name = "redfish"
    method = "energy-counter"
    role = "total"  # the chassis' reading is the whole node's
    fixed_hz = 1.0

    def __init__(
        self,
        host: str,
        chassis: str | None = None,
        credentials_file: str | None = None,
        verify_tls: bool = True,
        ca_file: str | None = None,
        timeout_s: float = 5.0,
        trust: TrustSettings | None = None,
        freeze_after_s: float = 30.0,
        client=None,
    ):
        self.host, self.verify_tls, self.trust = host, verify_tls, trust
        user, password, self.credentials_from = credentials(credentials_file)
        base = host if "://" in host else f"https://{host}"
        self.base, self.cafile = base, None
        if verify_tls and base.startswith("https://"):
            import certifi

            self.cafile = ca_file or certifi.where()
        try:
            self.client = client or load_redfish().redfish_client(
                base_url=base,
                username=user,
                password=password,
                cafile=self.cafile,
                timeout=timeout_s,
                max_retry=0,  # retried by the meter, not by the client's 1 s sleeps
            )
            self.client.login(auth="basic")
            path = self._chassis_path(chassis)
        except MeterError:
            raise
        except Exception as exc:  # noqa: BLE001 - InvalidCredentials, unreachable, bad TLS
            kind = type(exc).__name__
            if "Credentials" in kind or "401" in str(exc):
                raise MeterError(
                    f"the BMC at {host} refused the Redfish credentials (HTTP 401).",
                    f"check the user and password ({self.credentials_from}).",
                ) from exc
            raise MeterError(
                f"the BMC at {host} did not answer Redfish ({kind}).",
                "check meter.redfish.host, the network, and its TLS certificate "
                "(meter.redfish.ca_file, or verify_tls=false to skip verification, recorded).",
            ) from exc
        self.devices = [Chassis(self.client, path, freeze_after_s)]

    def _chassis_path(self, chassis: str | None) -> str:
        response = self.client.get("/redfish/v1/Chassis")
        if response.status == 401:
            raise MeterError(
                f"the BMC at {self.host} refused the Redfish credentials (HTTP 401).",
                f"check the user and password ({self.credentials_from}).",
            )
        members = [m.get("@odata.id", "") for m in (response.dict or {}).get("Members", [])]
        if chassis:
            members = [m for m in members if m.rstrip("/").rsplit("/", 1)[-1] == chassis]
        if not members:
            raise MeterError(
                f"the BMC at {self.host} has no chassis {chassis or ''}".strip() + ".",
                "set meter.redfish.chassis to one listed under /redfish/v1/Chassis.",
            )
        base = members[0].rstrip("/")
        for path in (f"{base}/EnvironmentMetrics", f"{base}/PowerSubsystem"):
            reply = self.client.get(path)
            if reply.status == 200 and _energy_j(reply.dict or {})[0] is not None:
                return path
        raise MeterError(
            f"{base} offers no cumulative energy (EnvironmentMetrics EnergyJoules/EnergykWh, "
            "PowerSubsystem).",
            "use a BMC with Redfish EnvironmentMetrics (DSP0268 2020.4+), or meter=ipmi.",
        )

    def covers(self) -> set[str]:
        return {"node"}

    def tick_period_s(self) -> dict[str, float]:
        return {}  # interpolated between readings: a BMC's refresh is not a fixed staircase

    def open(self, t_ns: int) -> None:
        self.devices[0].probe(1.0, tick_lock=False)
        check_source(self, self.devices, self.trust)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a BMC gone at the end loses no measurement
            self.client.logout()

    def _tls(self) -> str:
        if not self.base.startswith("https://"):
            return "plain http (no TLS)"
        if self.cafile:
            return f"verified (CA file {self.cafile})"
        return "not verified (meter.redfish.verify_tls=false)"

    def details(self) -> dict:
        d = self.devices[0]
        return {
            "host": self.host,
            "resource": d.path,
            "energy_field": d.energy_key,
            "tls": self._tls(),
            "credentials_from": self.credentials_from,
            "devices": [d.describe()],
        }
