"""Meters at the plug: SPEC PTDaemon over TCP (as MLPerf Power uses it) and IPMI DCMI.

Both measure the whole node, so their role is `total`: when device meters (NVML, RAPL) run
beside them, those become the breakdown and the wall reading is the system's energy.

PTDaemon speaks CRLF-terminated text lines (mlcommons/power-dev, ptd_client_server):
`Hello` -> "Hello, PTDaemon here!", `Identify`, `SR,V,<range>` / `SR,A,<range>` set the
voltage and current ranges, `Go,<interval_ms>,0,<mark>` starts logging, `Watts` returns the
latest power, `RL` the latest logged sample, `Stop` ends logging.
"""

from __future__ import annotations

import re
import shlex
import socket
import subprocess

from harness.errors import MeterError
from harness.meters.base import MeterSource, PowerIntegrator, Reading

EOL = b"\r\n"
NUMBER = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"


class PtdClient:
    """A blocking line client for PTDaemon with a timeout on every reply."""

    def __init__(self, host: str, port: int, timeout_s: float = 5.0):
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as exc:
            raise MeterError(
                f"cannot reach PTDaemon at {host}:{port} ({exc.strerror or exc}).",
                "start PTDaemon with -p <port> on the director and check meter.ptdaemon.host/port.",
            ) from exc
        self.sock.settimeout(timeout_s)
        self._buf = b""

    def command(self, line: str) -> str:
        try:
            self.sock.sendall(line.encode() + EOL)
            while EOL not in self._buf:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise MeterError(
                        f"PTDaemon closed the connection after {line!r}.",
                        "check the daemon's log; the trace up to here is kept.",
                    )
                self._buf += chunk
        except OSError as exc:
            raise MeterError(
                f"PTDaemon did not answer {line!r} ({exc}).", "check the daemon and the network."
            ) from exc
        reply, _, self._buf = self._buf.partition(EOL)
        return reply.decode(errors="replace")

    def close(self) -> None:
        self.sock.close()


def parse_watts(reply: str) -> float:
    """The power in a `Watts` reply ("Watts,123.4") or an `RL` sample line (",Watts,123.4,...")."""
    match = re.search(rf"Watts,\s*({NUMBER})", reply)
    if not match:
        raise MeterError(
            f"PTDaemon reply has no power reading: {reply[:80]!r}.",
            "check the analyzer is logging.",
        )
    return float(match.group(1))


def parse_sample(reply: str) -> dict[str, float | str]:
    """`RL` reply: "Time,<ts>,Watts,<w>,Volts,<v>,Amps,<a>,PF,<pf>,Mark,<mark>" as a dict."""
    parts = [p.strip() for p in reply.split(",")]
    out: dict[str, float | str] = {}
    for key, value in zip(parts[::2], parts[1::2], strict=False):
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


class PtdaemonSource(MeterSource):
    name = "ptdaemon"
    method = "wall-meter"
    provenance = "measured"
    role = "total"
    domain = "node:wall"

    def __init__(
        self,
        host: str,
        port: int,
        interval_ms: int = 1000,
        voltage_range: str = "Auto",
        current_range: str = "Auto",
        mark: str = "joulebench",
        timeout_s: float = 5.0,
    ):
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.interval_ms, self.voltage_range, self.current_range, self.mark = (
            interval_ms,
            voltage_range,
            current_range,
            mark,
        )
        self.client: PtdClient | None = None
        self.identity = ""
        self.last_sample: dict | None = None
        self._integrator = PowerIntegrator()

    def domains(self) -> list[str]:
        return [self.domain]

    def covers(self) -> set[str]:
        return {"node"}

    def open(self, t_ns: int) -> None:
        self.client = PtdClient(self.host, self.port, self.timeout_s)
        hello = self.client.command("Hello")
        if "PTDaemon" not in hello:
            raise MeterError(
                f"{self.host}:{self.port} is not PTDaemon (it said {hello[:60]!r}).",
                "point meter.ptdaemon.port at PTDaemon's port.",
            )
        self.identity = self.client.command("Identify")
        self.client.command(f"SR,V,{self.voltage_range}")
        self.client.command(f"SR,A,{self.current_range}")
        self.client.command(f"Go,{self.interval_ms},0,{self.mark}")

    def poll(self, t_ns: int) -> list[Reading]:
        watts = parse_watts(self.client.command("Watts"))
        return [Reading(self.domain, self._integrator.add(t_ns, watts), watts)]

    def close(self) -> None:
        if self.client is None:
            return
        try:
            self.last_sample = parse_sample(self.client.command("RL"))
            self.client.command("Stop")
        finally:
            self.client.close()
            self.client = None

    def details(self) -> dict:
        return {
            "daemon": f"{self.host}:{self.port}",
            "analyzer": self.identity,
            "interval_ms": self.interval_ms,
            "voltage_range": self.voltage_range,
            "current_range": self.current_range,
            "last_sample": self.last_sample,
        }


def parse_dcmi_power(output: str) -> float:
    """Instantaneous watts from `ipmitool dcmi power reading` output."""
    match = re.search(rf"Instantaneous power reading:\s*({NUMBER})\s*Watts", output)
    if not match:
        raise MeterError(
            "ipmitool's output has no 'Instantaneous power reading'.",
            "check the BMC supports DCMI power readings (`ipmitool dcmi power reading`).",
        )
    return float(match.group(1))


class IpmiDcmiSource(MeterSource):
    name = "ipmi-dcmi"
    method = "wall-meter"
    provenance = "measured"
    role = "total"
    domain = "node:wall"

    def __init__(self, command: str = "ipmitool dcmi power reading", timeout_s: float = 5.0):
        self.argv, self.timeout_s = shlex.split(command), timeout_s
        self._integrator = PowerIntegrator()

    def domains(self) -> list[str]:
        return [self.domain]

    def covers(self) -> set[str]:
        return {"node"}

    def read_watts(self) -> float:
        try:
            out = subprocess.run(
                self.argv, capture_output=True, text=True, timeout=self.timeout_s, check=True
            )
        except FileNotFoundError as exc:
            raise MeterError(
                f"{self.argv[0]} is not installed.", "install ipmitool, or set meter.ipmi.command."
            ) from exc
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise MeterError(
                f"`{' '.join(self.argv)}` failed ({exc}).", "run it by hand; it usually needs root."
            ) from exc
        return parse_dcmi_power(out.stdout)

    def open(self, t_ns: int) -> None:
        self.read_watts()  # fail now, before the run, if the BMC does not answer

    def poll(self, t_ns: int) -> list[Reading]:
        watts = self.read_watts()
        return [Reading(self.domain, self._integrator.add(t_ns, watts), watts)]

    def details(self) -> dict:
        return {"command": " ".join(self.argv)}
