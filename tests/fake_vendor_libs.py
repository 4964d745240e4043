"""Fake vendor C libraries, built with gcc, under the vendors' real Python modules.

The `amdsmi` package binds every function of libamd_smi.so at import, so the fake defines every
symbol its wrapper names (read from the installed wrapper): the ones a meter uses behave as
the scenario file says, the rest answer AMDSMI_STATUS_NOT_SUPPORTED. `pyhlml` binds lazily, so
the fake libhlml.so has only what the meter calls. Each library reads its scenario at init
from the file named by an environment variable, and its energy follows the monotonic clock:
a device drawing W watts with a counter step of S seconds reads W x S x floor(t / S) joules.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

AMD_IMPLEMENTED = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <math.h>

typedef struct {
  unsigned dom, bus, dev, fn, hip; double watts, step_s; char mode[16]; double param;
  char partition[16]; char name[256]; char uuid[64];
} fake_dev;
static fake_dev devs[16]; static int ndev = 0; static unsigned lib_v[3] = {26, 0, 2};
static double t0 = 0; static char build[] = "fake";
static double now_s(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9; }

int amdsmi_init(uint64_t flags) {
  const char *path = getenv("JB_FAKE_AMDSMI"); FILE *f; char line[512]; ndev = 0;
  if (!path || !(f = fopen(path, "r"))) return 2;
  while (fgets(line, sizeof line, f)) {
    fake_dev *d = &devs[ndev];
    if (sscanf(line, "lib %u %u %u", &lib_v[0], &lib_v[1], &lib_v[2]) == 3) continue;
    if (sscanf(line, "dev %x %x %x %x %u %lf %lf %15s %lf %15s %63s %255[^\n]", &d->dom,
               &d->bus, &d->dev, &d->fn, &d->hip, &d->watts, &d->step_s, d->mode, &d->param,
               d->partition, d->uuid, d->name) == 12 && ndev < 16) ndev++;
  }
  fclose(f); t0 = now_s(); return 0;
}
int amdsmi_shut_down(void) { return 0; }
void amdsmi_free_name_value_pairs(void *p) {}
typedef struct __attribute__((packed)) { uint32_t major, minor, release; uint8_t pad[4];
  char *build; } version_t;
int amdsmi_get_lib_version(version_t *v) {
  v->major = lib_v[0]; v->minor = lib_v[1]; v->release = lib_v[2]; v->build = build; return 0; }
static int socket_tag;
int amdsmi_get_socket_handles(uint32_t *count, void **out) {
  if (out) out[0] = &socket_tag; *count = 1; return 0; }
int amdsmi_get_processor_handles(void *sock, uint32_t *count, void **out) {
  if (out) for (int i = 0; i < ndev && i < (int)*count; i++) out[i] = &devs[i];
  *count = ndev; return 0; }
int amdsmi_get_gpu_device_bdf(fake_dev *d, uint64_t *bdf) {
  *bdf = (uint64_t)d->fn | ((uint64_t)d->dev << 3) | ((uint64_t)d->bus << 8)
       | ((uint64_t)d->dom << 16); return 0; }
typedef struct __attribute__((packed)) { uint32_t render, card, hsa, hip; char uuid[256]; } enum_t;
int amdsmi_get_gpu_enumeration_info(fake_dev *d, enum_t *e) {
  memset(e, 0, sizeof *e); e->hip = d->hip; e->hsa = d->hip; return 0; }
int amdsmi_get_gpu_device_uuid(fake_dev *d, uint32_t *len, char *out) {
  snprintf(out, *len, "%s", d->uuid); return 0; }
int amdsmi_get_gpu_asic_info(fake_dev *d, char *info) {
  snprintf(info, 256, "%s", d->name); return 0; }
int amdsmi_get_gpu_driver_info(fake_dev *d, char *info) {
  strcpy(info, "6.12.12"); strcpy(info + 512, "amdgpu"); return 0; }
typedef struct __attribute__((packed)) { uint64_t cap, dflt, dpm, min, max, r[3]; } cap_t;
int amdsmi_get_power_cap_info(fake_dev *d, uint32_t sensor, cap_t *c) {
  memset(c, 0, sizeof *c); c->cap = 750000000ULL; c->dflt = 750000000ULL; return 0; }
int amdsmi_get_gpu_compute_partition(fake_dev *d, char *out, uint32_t len) {
  if (!strcmp(d->partition, "none")) return 2; snprintf(out, len, "%s", d->partition); return 0; }
typedef struct __attribute__((packed)) { uint64_t socket; uint32_t current, average;
  uint64_t gfx, soc, mem; uint32_t limit; uint8_t pad[4]; uint64_t r[18]; } power_t;
static int secondary(fake_dev *d) { return !strcmp(d->mode, "secondary"); }
int amdsmi_get_power_info(fake_dev *d, power_t *p) {
  memset(p, 0, sizeof *p); uint32_t w = secondary(d) ? 0 : (uint32_t)d->watts;
  if (!strcmp(d->mode, "sentinel16")) w = 0xFFFF;
  if (!strcmp(d->mode, "sentinel32")) w = 0xFFFFFFFFu;
  if (strstr(d->name, "MI250")) { p->average = w; p->current = 0xFFFF; }
  else { p->current = w; p->average = 0xFFFF; }
  p->socket = 0xFFFF; return 0; }
int amdsmi_get_energy_count(fake_dev *d, uint64_t *acc, float *res, uint64_t *ts) {
  double t = now_s() - t0, joules;
  if (!strcmp(d->mode, "freeze") && t > d->param) t = d->param;
  joules = d->watts * d->step_s * floor(t / d->step_s);
  if (!strcmp(d->mode, "scale")) joules *= d->param;
  joules += 1000.0;  /* energy since the driver loaded */
  if (!strcmp(d->mode, "back") && t > d->param) joules -= 50.0;
  if (secondary(d) || !strcmp(d->mode, "zero")) joules = 0;
  *acc = (uint64_t)(joules * 65536.0 + 0.5);  /* the kernel's unit: 2^-16 J */
  *res = 15.3f;                                /* what the library reports */
  *ts = (uint64_t)(now_s() * 1e9); return 0; }
"""

HLML_SOURCE = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <math.h>

typedef struct { unsigned module, bus; double watts, step_s; char mode[16]; double param;
  char name[64]; } fake_dev;
static fake_dev devs[16]; static int ndev = 0; static double t0 = 0;
static double now_s(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9; }
int hlml_init(void) {
  const char *path = getenv("JB_FAKE_HLML"); FILE *f; char line[256]; ndev = 0;
  if (!path || !(f = fopen(path, "r"))) return 9;  /* HLML_ERROR_DRIVER_NOT_LOADED */
  while (fgets(line, sizeof line, f)) {
    fake_dev *d = &devs[ndev];
    if (sscanf(line, "dev %u %x %lf %lf %15s %lf %63[^\n]", &d->module, &d->bus, &d->watts,
               &d->step_s, d->mode, &d->param, d->name) == 7 && ndev < 16) ndev++;
  }
  fclose(f); t0 = now_s(); return 0;
}
int hlml_shutdown(void) { return 0; }
int hlml_device_get_count(unsigned *n) { *n = ndev; return 0; }
int hlml_device_get_handle_by_index(unsigned i, void **h) {
  if (i >= (unsigned)ndev) return 6; *h = &devs[i]; return 0; }
int hlml_device_get_module_id(fake_dev *d, unsigned *m) { *m = d->module; return 0; }
int hlml_device_get_name(fake_dev *d, char *out, unsigned len) {
  snprintf(out, len, "%s", d->name); return 0; }
typedef struct { unsigned bus; char bus_id[19]; } pci_head;
int hlml_device_get_pci_info(fake_dev *d, pci_head *p, unsigned len) {
  p->bus = d->bus; snprintf(p->bus_id, 19, "0000:%02x:00.0", d->bus); return 0; }
int hlml_get_hlml_version(char *out, unsigned len) { snprintf(out, len, "1.24.2"); return 0; }
int hlml_get_driver_version(char *out, unsigned len) { snprintf(out, len, "1.24.2-fake"); return 0; }
int hlml_device_get_power_management_default_limit(fake_dev *d, unsigned *mw) {
  *mw = 900000; return 0; }
int hlml_device_get_power_usage(fake_dev *d, unsigned *mw) {
  if (!strcmp(d->mode, "nopower")) return 3; *mw = (unsigned)(d->watts * 1000); return 0; }
int hlml_device_get_total_energy_consumption(fake_dev *d, unsigned long long *mj) {
  double t = now_s() - t0, joules;
  if (!strcmp(d->mode, "busy") && t > d->param) return 10;  /* HLML_ERROR_TIMEOUT */
  if (!strcmp(d->mode, "freeze") && t > d->param) t = d->param;
  joules = d->watts * d->step_s * floor(t / d->step_s);
  if (!strcmp(d->mode, "scale")) joules *= d->param;
  *mj = 5000000ULL + (unsigned long long)(joules * 1000.0 + 0.5); return 0; }
"""


def _gcc(source: str, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    c = out.with_suffix(".c")
    c.write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(out), str(c), "-lm"], check=True)
    return out


def amdsmi_symbols() -> list[str]:
    """Every function the installed amdsmi wrapper binds from libamd_smi.so."""
    spec = importlib.util.find_spec("amdsmi")
    wrapper = Path(spec.submodule_search_locations[0]) / "amdsmi_wrapper.py"
    return sorted(set(re.findall(r"_libraries\['libamd_smi.so'\]\.(\w+)", wrapper.read_text())))


def build_libamd_smi(rocm_path: Path) -> Path:
    """ROCM_PATH/lib/libamd_smi.so: the implemented functions and a stub for every other."""
    defined = set(re.findall(r"^\w[\w ]*?\b(amdsmi_\w+)\(", AMD_IMPLEMENTED, re.M))
    stubs = "".join(
        f"int {name}(void) {{ return 2; }}\n" for name in amdsmi_symbols() if name not in defined
    )
    return _gcc(AMD_IMPLEMENTED + stubs, rocm_path / "lib" / "libamd_smi.so")


def build_libhlml(directory: Path) -> Path:
    return _gcc(HLML_SOURCE, directory / "libhlml.so")


def amd_scenario(path: Path, devices: list[str], lib: str = "26 0 2") -> Path:
    """`devices`: "dom bus dev fn hip watts step_s mode param partition uuid name" lines."""
    path.write_text(f"lib {lib}\n" + "".join(f"dev {d}\n" for d in devices))
    return path
