"""Meters at the plug: SPEC PTDaemon over TCP (as MLPerf Power uses it) and IPMI DCMI.

Both measure the whole node, so their role is `total`: when device meters (NVML, RAPL) run
beside them, those become the breakdown and the wall reading is the system's energy.

PTDaemon speaks text lines (CRLF; a bare LF is accepted, as power-dev's Proto does). The
session follows mlcommons/power-dev (ptd_client_server/lib/server.py), and compliance/check.py
states the replies it expects:

    Hello                   -> "Hello, PTDaemon here!"
    Identify                -> "<model>,version=<x.y.z>-...": analyzer model and PTD version
    RR                      -> "Ranges,<A auto>,<A range>,<V auto>,<V range>": restored at the end
    SR,V,Auto / SR,A,Auto   -> "Range V changed" / "Range A changed"    (ranging pass: warm-up)
    Go,1000,0,<mark>_ranging -> "Starting untimed measurement, ..."
    Stop, RL                -> "Last N samples" then N lines "Time,..,Watts,..,Volts,..,Amps,.."
    SR,V,<max V> / SR,A,<1.1 x max A>, settle, Go,<interval>,0,<mark>_testing   (before run_start)
    Watts (every poll)      -> the latest power
    Watts, Uncertainty, Stop, RL at the end; then SR,V / SR,A back to the initial ranges

Any reply containing "Error" to SR, Go or Stop is a failure. With both ranges given
(meter.ptdaemon.voltage_range/current_range) the ranging pass is skipped.
"""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import threading
import time

from harness.errors import MeterError
from harness.meters.base import MeterSource, PowerIntegrator, Reading

EOL = b"\r\n"
NUMBER = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
HELLO = "Hello, PTDaemon here!"
CURRENT_MARGIN = 1.1  # power-dev: the testing current range is 1.1 x the ranging maximum


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
        self.lock = threading.Lock()  # one exchange at a time: the sampler and the session
        self.log: list[tuple[str, str]] = []  # (command, reply), as power-dev's PtdMessages

    def _line(self, after: str) -> str:
        try:
            while b"\n" not in self._buf:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise MeterError(
                        f"PTDaemon closed the connection after {after!r}.",
                        "check the daemon's log; the trace up to here is kept.",
                    )
                self._buf += chunk
        except OSError as exc:
            raise MeterError(
                f"PTDaemon did not answer {after!r} ({exc}).", "check the daemon and the network."
            ) from exc
        line, _, self._buf = self._buf.partition(b"\n")
        return line.rstrip(b"\r").decode(errors="replace")

    def command(self, line: str, lines_after: bool = False) -> str | tuple[str, list[str]]:
        with self.lock:
            try:
                self.sock.sendall(line.encode() + EOL)
            except OSError as exc:
                raise MeterError(
                    f"PTDaemon did not take {line!r} ({exc}).", "check the daemon and the network."
                ) from exc
            reply = self._line(line)
            self.log.append((line, reply))
            if not lines_after:
                return reply
            match = re.fullmatch(r"Last (\d+) samples?", reply.strip())
            if not match:
                raise MeterError(
                    f"PTDaemon answered {line!r} with {reply[:80]!r}, not 'Last N samples'.",
                    "use a PTDaemon that power-dev supports (1.11.1).",
                )
            return reply, [self._line(line) for _ in range(int(match.group(1)))]

    def checked(self, line: str) -> str:
        """A command whose "Error..." reply is a failure (SR, Go, Stop)."""
        reply = self.command(line)
        if "Error" in reply:
            raise MeterError(
                f"PTDaemon refused {line!r}: {reply[:120]}.", "check the analyzer and its ranges."
            )
        return reply

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
    """`RL` sample: "Time,<ts>,Watts,<w>,Volts,<v>,Amps,<a>,PF,<pf>,Mark,<mark>" as a dict."""
    parts = [p.strip() for p in reply.split(",")]
    out: dict[str, float | str] = {}
    for key, value in zip(parts[::2], parts[1::2], strict=False):
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


def parse_identity(reply: str) -> dict[str, str]:
    """Analyzer model and PTD version from `Identify`, read as power-dev's compliance check
    does: the model is the first field, the version follows "version=" up to a "-"."""
    version = re.search(r"(?<=version=)(.+?)-", reply)
    return {
        "model": reply.split(",")[0].strip(),
        "ptd_version": version.group(1) if version else "",
    }


def parse_ranges(reply: str) -> tuple[str, str]:
    """(initial amps range, initial volts range) from `RR`: "Ranges,<A auto>,<A>,<V auto>,<V>";
    a fixed range where autorange is 0 and the range positive, else "Auto" (as power-dev)."""
    fields = reply.split(",")

    def one(i: int) -> str:
        try:
            if fields[i] == "0" and float(fields[i + 1]) > 0:
                return fields[i + 1]
        except (ValueError, IndexError):
            return "Auto"
        return "Auto"

    return one(1), one(3)


def parse_uncertainty(reply: str) -> float | None:
    """The analyzer's uncertainty in percent from an `Uncertainty` reply, when it states one."""
    match = re.search(NUMBER, reply.split(",", 1)[-1])
    return float(match.group(0)) if match and "Error" not in reply else None


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
        settle_s: float = 10.0,
    ):
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.interval_ms, self.mark, self.settle_s = interval_ms, mark, settle_s
        self.fixed = (
            (voltage_range, current_range) if "Auto" not in (voltage_range, current_range) else None
        )
        self.ranges = {"volts": voltage_range, "amps": current_range}
        self.client: PtdClient | None = None
        self.identity: dict[str, str] = {}
        self.initial: tuple[str, str] = ("Auto", "Auto")  # (amps, volts), restored at the end
        self.phase = "closed"
        self.ranging_max: dict[str, float] = {}
        self.summary: dict = {}
        self._integrator = PowerIntegrator()

    def domains(self) -> list[str]:
        return [self.domain]

    def covers(self) -> set[str]:
        return {"node"}

    def default_hz(self) -> float:
        return 2.0 * 1000.0 / self.interval_ms  # twice the analyzer's own sample rate

    def open(self, t_ns: int) -> None:
        self.client = PtdClient(self.host, self.port, self.timeout_s)
        hello = self.client.command("Hello")
        if hello != HELLO:
            raise MeterError(
                f"{self.host}:{self.port} is not PTDaemon (it said {hello[:60]!r}).",
                "point meter.ptdaemon.port at PTDaemon's port.",
            )
        reply = self.client.command("Identify")
        self.identity = {"reply": reply, **parse_identity(reply)}
        self.initial = parse_ranges(self.client.command("RR"))
        if self.fixed:
            self._start_testing(*self.fixed)
            return
        self.client.checked("SR,V,Auto")
        self.client.checked("SR,A,Auto")
        self.client.checked(f"Go,1000,0,{self.mark}_ranging")
        self.phase = "ranging"

    def prepare_timed_run(self) -> None:
        """End the ranging pass (the warm-up's load) and fix the ranges from its maxima."""
        if self.phase != "ranging":
            return
        self.client.checked("Stop")
        _, lines = self.client.command("RL", lines_after=True)
        samples = [parse_sample(x) for x in lines]
        volts = [
            s["Volts"] for s in samples if isinstance(s.get("Volts"), float) and s["Volts"] > 0
        ]
        amps = [s["Amps"] for s in samples if isinstance(s.get("Amps"), float) and s["Amps"] > 0]
        if not volts or not amps:
            raise MeterError(
                f"the PTDaemon ranging pass logged {len(samples)} usable samples.",
                "run more warm-up steps (benchmark.warmup_steps), or give meter.ptdaemon."
                "voltage_range and current_range.",
            )
        self.ranging_max = {"volts": max(volts), "amps": max(amps), "samples": len(samples)}
        self._start_testing(f"{max(volts):g}", f"{CURRENT_MARGIN * max(amps):.6g}")

    def _start_testing(self, volts: str, amps: str) -> None:
        self.client.checked(f"SR,V,{volts}")
        self.client.checked(f"SR,A,{amps}")
        self.ranges = {"volts": volts, "amps": amps}
        time.sleep(self.settle_s)  # the analyzer settles on its new ranges (power-dev: 10 s)
        self.client.checked(f"Go,{self.interval_ms},0,{self.mark}_testing")
        self.phase = "testing"

    def poll(self, t_ns: int) -> list[Reading]:
        watts = parse_watts(self.client.command("Watts"))
        stamp = self.clock()
        return [Reading(self.domain, self._integrator.add(stamp, watts), watts, stamp)]

    def close(self) -> None:
        if self.client is None:
            return
        try:
            if self.phase in ("ranging", "testing"):
                last = self.client.command("Watts")
                uncertainty = self.client.command("Uncertainty")
                self.client.checked("Stop")
                _, lines = self.client.command("RL", lines_after=True)
                watts = [
                    s["Watts"]
                    for s in map(parse_sample, lines)
                    if isinstance(s.get("Watts"), float)
                ]
                self.summary = {
                    "phase": self.phase,
                    "last_watts_reply": last,
                    "uncertainty_reply": uncertainty,
                    "uncertainty_pct": parse_uncertainty(uncertainty),
                    "analyzer_samples": len(lines),
                    "analyzer_mean_w": sum(watts) / len(watts) if watts else None,
                }
        finally:
            try:  # leave the analyzer as we found it, as power-dev does
                self.client.checked(f"SR,V,{self.initial[1]}")
                self.client.checked(f"SR,A,{self.initial[0]}")
            finally:
                self.client.close()
                self.client = None
                self.phase = "closed"

    def details(self) -> dict:
        return {
            "daemon": f"{self.host}:{self.port}",
            "analyzer": self.identity.get("model", ""),
            "ptd_version": self.identity.get("ptd_version", ""),
            "identify_reply": self.identity.get("reply", ""),
            "interval_ms": self.interval_ms,
            "ranging": "skipped: fixed ranges given" if self.fixed else self.ranging_max or None,
            "voltage_range": self.ranges["volts"],
            "current_range": self.ranges["amps"],
            "initial_ranges": {"amps": self.initial[0], "volts": self.initial[1]},
            "settle_s": self.settle_s,
            **self.summary,
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

    def default_hz(self) -> float:
        return 1.0  # a BMC refreshes its DCMI reading about once a second

    def open(self, t_ns: int) -> None:
        self.read_watts()  # fail now, before the run, if the BMC does not answer

    def poll(self, t_ns: int) -> list[Reading]:
        watts = self.read_watts()
        stamp = self.clock()
        return [Reading(self.domain, self._integrator.add(stamp, watts), watts, stamp)]

    def details(self) -> dict:
        return {"command": " ".join(self.argv)}
