"""A Redfish BMC on loopback, shaped as DMTF's public mockups shape one (DSP2043: the service
root, a Chassis collection, a chassis' EnvironmentMetrics with PowerWatts and EnergyJoules or
EnergykWh), with the faults real BMCs have: bad credentials, a hung request, a stuck reading
and a counter that restarts. Energy follows the monotonic clock: `watts` x the time to the last
sensor refresh (every `refresh_s`)."""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHASSIS = "/redfish/v1/Chassis/1U"


class FakeBmc:
    def __init__(self, user="admin", password="s3cret-Pa55", watts=400.0, refresh_s=0.02):
        self.user, self.password, self.watts, self.refresh_s = user, password, watts, refresh_s
        self.kwh = False  # serve EnergykWh (3 decimals) instead of EnergyJoules
        self.stuck_after_s: float | None = None
        self.reset = False  # the BMC restarted its count: energy from zero again
        self.hang = False  # every authenticated request outlasts the client's timeout
        self.t0 = time.monotonic()
        bmc = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                bmc.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def energy_j(self) -> float:
        t = time.monotonic() - self.t0
        if self.stuck_after_s is not None:
            t = min(t, self.stuck_after_s)
        joules = 2.5e6 + self.watts * self.refresh_s * math.floor(t / self.refresh_s)
        if self.reset:
            joules -= 2.5e6
        return joules

    def document(self, path: str):
        if path in ("/redfish/v1", "/redfish/v1/"):
            return {
                "@odata.id": "/redfish/v1",
                "@odata.type": "#ServiceRoot.v1_15_0.ServiceRoot",
                "RedfishVersion": "1.15.0",
                "Chassis": {"@odata.id": "/redfish/v1/Chassis"},
                "SessionService": {"@odata.id": "/redfish/v1/SessionService"},
                "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}},
            }
        if path == "/redfish/v1/SessionService/Sessions":
            return {"Members": [], "Members@odata.count": 0}
        if path == "/redfish/v1/Chassis":
            return {"Members": [{"@odata.id": CHASSIS}], "Members@odata.count": 1}
        if path == CHASSIS + "/EnvironmentMetrics":
            energy = self.energy_j()
            doc = {
                "@odata.id": path,
                "@odata.type": "#EnvironmentMetrics.v1_3_0.EnvironmentMetrics",
                "PowerWatts": {
                    "DataSourceUri": CHASSIS + "/Sensors/PowerWatts",
                    "Reading": self.watts,
                },
            }
            if self.kwh:
                doc["EnergykWh"] = {"Reading": round(energy / 3.6e6, 3)}
            else:
                doc["EnergyJoules"] = {"Reading": round(energy)}
            return doc
        return None

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?")[0]
        if path not in ("/redfish/v1", "/redfish/v1/"):
            expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            if request.headers.get("Authorization") != f"Basic {expected}":
                return self._send(request, 401, {"error": {"code": "Base.1.0.NoValidSession"}})
            if self.hang:
                time.sleep(2.0)  # longer than the client's timeout
        doc = self.document(path)
        self._send(request, 200 if doc is not None else 404, doc or {})

    @staticmethod
    def _send(request, code: int, doc: dict) -> None:
        body = json.dumps(doc).encode()
        request.send_response(code)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
