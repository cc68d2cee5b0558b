#!/usr/bin/env python3
"""reclab benchmarks, each next to the alternative a user would pick, in one run.

Run through scripts/bench (it builds the release binary and sets RECLAB_BIN). Every figure is
the median of several runs; each row has its baseline, the ratio and, where the issues set
one, a target with pass/fail.
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

GIB = 1 << 30
MIB = 1 << 20

REPO = os.environ.get("RECLAB_REPO", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECLAB = os.environ.get("RECLAB_BIN", os.path.join(REPO, "target/release/reclab"))
# The benchmark programs (examples/bench_*.rs) that call the library the way `up` does.
EXAMPLES = os.environ.get("RECLAB_EXAMPLES", os.path.join(REPO, "target/release/examples"))
BENCH_TOOLS = ("bench_bisect", "bench_choose", "bench_clone", "bench_datadisk", "bench_plan", "bench_push")
DEV_DIR = os.environ.get("RECLAB_DEV_DIR", "/var/tmp/reclab-dev").rstrip("/")
SANDBOX_CMD = os.path.join(REPO, "scripts/sandbox")
ESTATE_CMD = os.path.join(REPO, "scripts/estate")
SANDBOX = "bench"


def tool(name):
    """Path of the benchmark program examples/NAME.rs, built by scripts/bench."""
    return os.path.join(EXAMPLES, name)


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def die(msg):
    print(f"bench: error: {msg}", file=sys.stderr)
    sys.exit(1)


def run(args, check=True, **kw):
    """Run a command; return (seconds, CompletedProcess, max RSS of the child in KiB)."""
    t = time.monotonic()
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    out, err = p.communicate()
    took = time.monotonic() - t
    # communicate() reaped the child; its rusage is folded into RUSAGE_CHILDREN, so the RSS is
    # taken with wait4 instead where it matters (see run_rss).
    cp = subprocess.CompletedProcess(args, p.returncode, out, err)
    if check and p.returncode != 0:
        die(f"{' '.join(map(str, args))} failed ({p.returncode}):\n{err.strip()[-2000:]}")
    return took, cp


def vm_hwm_kib(pid, comm):
    """Peak resident set (VmHWM, KiB) of PID if it currently runs COMM, else 0."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return 0
    if fields.get("Name", "").strip() != comm:
        return 0
    return int(fields.get("VmHWM", "0 kB").split()[0])


def run_rss(args, check=True, comm="reclab"):
    """Run a command with its output in temporary files; return (seconds, stdout, stderr,
    exit code, peak RSS in KiB of the process once it runs COMM). The command may exec COMM
    (scripts/sandbox exec does): VmHWM is polled every 20 ms, so only its own memory counts,
    not that of the helpers it runs (qemu-img, ip)."""
    import threading
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.monotonic()
        p = subprocess.Popen(args, stdout=out, stderr=err)
        peak = [0]
        done = threading.Event()

        def poll():
            while not done.is_set():
                peak[0] = max(peak[0], vm_hwm_kib(p.pid, comm))
                time.sleep(0.02)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        _, status, ru = os.wait4(p.pid, 0)
        done.set()
        poller.join()
        took = time.monotonic() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        o, e = out.read(), err.read()
    if check and p.returncode != 0:
        die(f"{' '.join(map(str, args))} failed ({p.returncode}):\n{e.strip()[-3000:]}")
    return took, o, e, p.returncode, peak[0]


def median(xs):
    return statistics.median(xs) if xs else None


def fmt_s(x):
    if x is None:
        return "-"
    if x < 1:
        return f"{x * 1000:.0f} ms"
    return f"{x:.2f} s"


class Table:
    def __init__(self):
        self.rows = []

    def add(self, name, value, unit, baseline_name, baseline, ratio=None, target=None,
            passed=None, runs=None, note=""):
        # Ratio: baseline ÷ reclab, so above 1 means reclab is that many times faster.
        if ratio is None and value and baseline is not None:
            ratio = baseline / value
        self.rows.append({
            "measurement": name, "value": value, "unit": unit, "baseline": baseline_name,
            "baseline_value": baseline, "ratio": ratio, "target": target, "pass": passed,
            "runs": runs, "note": note,
        })
        log(f"{name}: {self.cell(value, unit)} vs {baseline_name} {self.cell(baseline, unit)}")

    @staticmethod
    def cell(v, unit):
        if v is None:
            return "-"
        if unit == "s":
            return fmt_s(v)
        if unit == "MiB":
            return f"{v:.1f} MiB"
        return f"{v} {unit}"

    def markdown(self):
        lines = ["| measurement | reclab | baseline | baseline ÷ reclab | target | result |",
                 "| --- | --- | --- | --- | --- | --- |"]
        for r in self.rows:
            base = r["baseline"]
            if r["baseline_value"] is not None:
                base = f"{base}: {self.cell(r['baseline_value'], r['unit'])}"
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.1f}×"
            result = {True: "pass", False: "FAIL", None: "-"}[r["pass"]]
            name = r["measurement"] + (f" ({r['note']})" if r["note"] else "")
            lines.append(f"| {name} | {self.cell(r['value'], r['unit'])} | {base} | {ratio} "
                         f"| {r['target'] or '-'} | {result} |")
        return "\n".join(lines)


def machine():
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True)
    libvirt = subprocess.run(["libvirtd", "--version"], capture_output=True, text=True)
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem / GIB, 1),
        "cpu": cpu,
        "kernel": platform.release(),
        "os": platform.freedesktop_os_release().get("PRETTY_NAME", "?")
        if hasattr(platform, "freedesktop_os_release") else "?",
        "qemu": qemu.stdout.splitlines()[0] if qemu.returncode == 0 else "?",
        "libvirt": libvirt.stdout.strip() or "?",
        "accel": "TCG (software emulation; nested KVM is not usable here)",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# ---------------------------------------------------------------- clone

def make_source(path, size, random_data):
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    tmp = path + ".tmp"
    if random_data:
        log(f"creating {path}: {size // MIB} MiB of random data (once, reused)")
        run(["sh", "-c", f"head -c {size} /dev/urandom > '{tmp}' && sync '{tmp}'"])
    else:
        log(f"creating {path}: {size // GIB} GiB sparse (once, reused)")
        run(["truncate", "-s", str(size), tmp])
    os.rename(tmp, path)


def timed_clone(args, dst):
    """Time one clone command plus fsync of its result (so copies are not measured into the
    page cache), then delete the result."""
    t = time.monotonic()
    run(args)
    run(["sync", dst])
    took = time.monotonic() - t
    os.unlink(dst)
    return took


def bench_clone(table, opts, work):
    bench_dir = os.path.join(DEV_DIR, "bench")
    os.makedirs(bench_dir, exist_ok=True)
    src4 = os.path.join(bench_dir, "src-4g.raw")
    src10m = os.path.join(bench_dir, "src-10m.raw")
    src20g = os.path.join(bench_dir, "src-20g-sparse.raw")
    make_source(src4, 4 * GIB, True)
    make_source(src10m, 10 * MIB, True)
    make_source(src20g, 20 * GIB, False)
    dst = os.path.join(work, "clone.qcow2")

    def reclab_clone(src):
        return timed_clone([tool("bench_clone"), "--format", "raw", src, dst], dst)

    reclab4 = [reclab_clone(src4) for _ in range(opts.runs)]
    floor = [timed_clone(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-F", "raw", "-b",
                          src4, dst, str(4 * GIB)], dst) for _ in range(opts.runs)]
    copy = [timed_clone(["cp", "--sparse=never", src4, dst], dst) for _ in range(opts.slow_runs)]
    convert = [timed_clone(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", src4, dst], dst)
               for _ in range(opts.slow_runs)]
    r = median(reclab4)
    table.add("clone a 4 GiB disk full of data", r, "s", "full copy (cp --sparse=never)",
              median(copy), runs=opts.slow_runs)
    table.add("clone a 4 GiB disk full of data", r, "s",
              "virt-clone's way (qemu-img convert -O qcow2)", median(convert), runs=opts.slow_runs)
    table.add("clone a 4 GiB disk full of data", r, "s", "floor: bare qemu-img create -b",
              median(floor), runs=opts.runs)
    small = [reclab_clone(src10m) for _ in range(opts.runs)]
    big = [reclab_clone(src20g) for _ in range(opts.runs)]
    ratio = median(small) / median(big)
    table.add("clone a 20 GiB sparse disk", median(big), "s", "reclab cloning a 10 MiB disk",
              median(small), ratio=ratio, target="same cost (ratio 0.67–1.5)",
              passed=0.67 <= ratio <= 1.5, runs=opts.runs)


# ---------------------------------------------------------------- injection (host side)

def bench_inject_host(table, opts, work):
    bench_dir = os.path.join(DEV_DIR, "bench")
    dump_dir = os.path.join(bench_dir, "dump-1g")
    os.makedirs(dump_dir, exist_ok=True)
    dump = os.path.join(dump_dir, "dump.sql")
    make_source(dump, GIB, True)
    img = os.path.join(work, "data.img")
    size = GIB + 96 * MIB

    def build():
        # reclab's own builder (src/datadisk.rs), as `up` runs it, plus the flush to disk.
        t = time.monotonic()
        run([tool("bench_datadisk"), img, dump])
        run(["sync", img])
        return time.monotonic() - t

    def mke2fs_d():
        # What reclab did before: mke2fs copying the dump into the new file system itself.
        t = time.monotonic()
        run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "RECLABDATA", "-d", dump_dir, old_img,
             str(size // 1024) + "k"])
        run(["sync", old_img])
        took = time.monotonic() - t
        os.unlink(old_img)
        return took

    old_img = os.path.join(work, "data-mke2fs.img")
    builds, cps, olds = [], [], []
    # Interleaved, so that a noisy neighbour hits every variant alike.
    for _ in range(opts.slow_runs):
        builds.append(build())
        cps.append(timed_clone(["cp", dump, os.path.join(work, "dump.copy")],
                               os.path.join(work, "dump.copy")))
        olds.append(mke2fs_d())
    b, c = median(builds), median(cps)
    # Speed is bytes / time, so "reclab at least half as fast as cp" is cp's time / reclab's
    # time >= 0.5.
    table.add("inject a 1 GiB dump: build the data disk (`reclab::datadisk`, ext4)", b, "s",
              "cp of the same bytes on the same disk", c, runs=opts.slow_runs,
              target=">= half the speed of cp (ratio >= 0.5)", passed=c / b >= 0.5,
              note="both timed with sync of the result")
    table.add("inject a 1 GiB dump: build the data disk (`reclab::datadisk`, ext4)", b, "s",
              "mke2fs -d copying the dump itself (reclab's earlier builder)", median(olds),
              runs=opts.slow_runs)
    return img  # kept for the guest-side rows


# ---------------------------------------------------------------- the lab

class Lab:
    def __init__(self, opts, work):
        self.opts = opts
        self.work = work
        self.state = os.path.join(work, "state")
        os.makedirs(self.state, exist_ok=True)
        self.uri = None

    def start(self):
        _, cp = run([SANDBOX_CMD, "start", SANDBOX])
        self.uri = cp.stdout.strip()
        log("creating the demo estate in sandbox 'bench' (takes a minute or two)")
        run([ESTATE_CMD, "create", SANDBOX])
        # The demo lab, ready when the guest agents answer (as the plain script checks): its
        # extra TCP readiness probes wait for the guests' web servers, not for reclab.
        # The lab file's paths are relative to it: put it next to the estate's backups/.
        self.lab = os.path.join(DEV_DIR, "estate", SANDBOX, "bench-erp.toml")
        with open(os.path.join(REPO, "examples/erp.toml")) as f:
            text = f.read()
        text = re.sub(r"(?m)^ready = \{ tcp = \d+ \}\n", "", text)
        text = re.sub(r", tcp = \d+ \}", " }", text)
        if "tcp =" in text:
            die("could not drop the tcp readiness probes from examples/erp.toml")
        # Without its dumps: these rows time the VMs' life cycle against a plain script that
        # does no restore; injection has rows of its own. (Checks are not run by `up`.)
        text, n = re.subn(r"(?ms)^\[vm\.dumps\]\n.*?(?=^\[)", "", text)
        text, m = re.subn(r"(?ms)^\[\[check\]\]\n.*?(?=^\[|\Z)", "", text)
        if n != 1 or m == 0:
            die("could not drop the dumps and checks from examples/erp.toml")
        with open(self.lab, "w") as f:
            f.write(text)
        # Production's guests idle on the same 2 cores; paused, they add no noise to the lab
        # timings (the lab clones their frozen backup images either way).
        for role in ("db", "app", "client"):
            self.virsh("suspend", f"prod-{role}", check=False)

    def stop(self):
        # Labs first (their lab-services namespaces live outside the sandbox, and gc keeps a
        # lab that is still running), then the estate, then the daemon.
        runs = os.path.join(self.state, "runs")
        for run_id in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
            run(self.reclab_cmd("down", run_id), check=False)
        run(self.reclab_cmd("gc"), check=False)
        run([ESTATE_CMD, "destroy", SANDBOX], check=False)
        run([SANDBOX_CMD, "stop", SANDBOX], check=False)

    def in_sandbox(self, *cmd):
        return [SANDBOX_CMD, "exec", SANDBOX, "env", f"RECLAB_CONNECT={self.uri}", *cmd]

    def reclab_cmd(self, *args):
        return self.in_sandbox(RECLAB, "--state-dir", self.state, *args)

    def virsh(self, *args, check=True):
        return run(["virsh", "-q", "-c", self.uri, *args], check=check)[1]

    def reclab_up(self):
        took, out, _, _, rss = run_rss(self.reclab_cmd("up", "--json", self.lab))
        return took, json.loads(out), rss

    def reclab_down(self, run_id):
        took, _, _, _, rss = run_rss(self.reclab_cmd("down", run_id))
        return took, rss

    def plan(self):
        _, cp = run(self.in_sandbox(tool("bench_plan"), self.lab, self.state))
        return json.loads(cp.stdout)

    def plain_up(self, plan):
        """What a plain script does: overlays, network, then per tier define + start + ping."""
        t = time.monotonic()
        os.makedirs(plan["run_dir"], exist_ok=True)
        xmls = []
        for vm in plan["vms"]:
            for o in vm["overlays"]:
                run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-F", o["format"], "-b",
                     o["backing"], o["path"], str(o["virtual_size"])])
        for n in plan["networks"]:
            path = os.path.join(plan["run_dir"], n["name"] + ".net.xml")
            with open(path, "w") as f:
                f.write(n["xml"])
            self.virsh("net-create", path)
        tiers = sorted({vm["tier"] for vm in plan["vms"]})
        for tier in tiers:
            vms = [vm for vm in plan["vms"] if vm["tier"] == tier]
            for vm in vms:
                path = os.path.join(plan["run_dir"], vm["domain"] + ".xml")
                with open(path, "w") as f:
                    f.write(vm["xml"])
                xmls.append(path)
                self.virsh("define", path)
                self.virsh("start", vm["domain"])
            for vm in vms:
                deadline = time.monotonic() + 300
                while True:
                    cp = self.virsh("qemu-agent-command", vm["domain"], "--timeout", "1",
                                    '{"execute":"guest-ping"}', check=False)
                    if cp.returncode == 0:
                        break
                    if time.monotonic() > deadline:
                        die(f"plain script: {vm['domain']} never answered guest-ping")
                    time.sleep(0.25)
        return time.monotonic() - t

    def plain_down(self, plan):
        """What a plain script does to clean up: destroy + undefine each VM, the network, the
        files (in sequence, as a simple script would)."""
        t = time.monotonic()
        for vm in plan["vms"]:
            self.virsh("destroy", vm["domain"], check=False)
            self.virsh("undefine", vm["domain"], check=False)
        for n in plan["networks"]:
            self.virsh("net-destroy", n["name"], check=False)
        shutil.rmtree(plan["run_dir"], ignore_errors=True)
        return time.monotonic() - t


def bench_lab(table, opts, work, data_img):
    lab = Lab(opts, work)
    lab.start()
    ups, downs, plain_ups, plain_downs, rss = [], [], [], [], []
    timings = []
    guest = {}
    try:
        for i in range(opts.slow_runs):
            log(f"lab run {i + 1}/{opts.slow_runs}: reclab up")
            took, report, peak = lab.reclab_up()
            ups.append(took)
            rss.append(peak)
            timings.append(report["timings_ms"])
            if i == 0:
                guest = bench_inject_guest(lab, report, data_img, work)
            log(f"lab run {i + 1}/{opts.slow_runs}: reclab down")
            took, peak = lab.reclab_down(report["run"])
            downs.append(took)
            rss.append(peak)
            log(f"lab run {i + 1}/{opts.slow_runs}: plain script")
            plan = lab.plan()
            plain_ups.append(lab.plain_up(plan))
            plain_downs.append(lab.plain_down(plan))
    finally:
        if not opts.keep:
            lab.stop()
    up, plain = median(ups), median(plain_ups)
    # Paired: each reclab run is followed by a plain-script run of the same lab.
    overhead = median([u - p for u, p in zip(ups, plain_ups)])
    table.add("3-VM demo lab up (to every VM ready)", up, "s",
              "plain script: virsh define + start + guest-ping loop, same tiers", plain,
              runs=opts.slow_runs)
    table.add("reclab's overhead for the 3-VM lab (up minus plain script)", overhead, "s",
              "-", None, target="< 1 s", passed=overhead < 1.0, runs=opts.slow_runs,
              note="median of paired differences; a TCG boot varies by ±1 s per tier")
    # reclab's own accounting: wall time minus the boot tiers (starting the domains and
    # waiting for their agents), i.e. everything except the guests' boot.
    own = []
    for took, steps in zip(ups, timings):
        boot = sum(ms for label, ms in steps if label.startswith("boot tier")) / 1000
        own.append(took - boot)
    table.add("reclab's own time in up, outside the guests' boot", median(own), "s", "-", None,
              target="< 1 s", passed=median(own) < 1.0, runs=opts.slow_runs,
              note="wall time minus its boot tiers: resolve, plan, clone, network, services, "
                   "isolation checks, process start")
    down = median(downs)
    table.add("teardown of the 3-VM lab (reclab down)", down, "s",
              "plain script: virsh destroy + undefine, net-destroy, rm", median(plain_downs),
              target="< 3 s", passed=down < 3.0,
              runs=opts.slow_runs)
    peak = max(rss) / 1024
    table.add("peak memory of reclab during a 3-VM drill (up + down)", peak, "MiB",
              "-", None, runs=len(rss), note="VmHWM of the reclab process")
    if guest:
        table.add("inject a 1 GiB dump: data disk hot-plugged, guest mounts and reads it all",
                  guest["disk_read"], "s",
                  f"guest-file-write (extrapolated ×128 from {guest['push_8m']:.2f} s for 8 MiB)",
                  guest["push_1g"], runs=1)
    return {"up_timings_ms": timings, "plain_up": plain_ups, "reclab_up": ups}


def bench_inject_guest(lab, report, data_img, work):
    """In a lab VM: 8 MiB through guest-file-write (reclab's agent code), and the 1 GiB data
    disk hot-plugged and read in the guest."""
    db = next(v for v in report["vms"] if v["name"] == "db")["domain"]
    blob = os.path.join(work, "push-8m.bin")
    with open(blob, "wb") as f:
        f.write(os.urandom(8 * MIB))
    _, cp = run(lab.in_sandbox(tool("bench_push"), db, blob, "/root/push-8m.bin"))
    push_8m = json.loads(cp.stdout)["ms"] / 1000
    run(lab.reclab_cmd("exec", report["run"], "db", "--", "rm -f /root/push-8m.bin"))
    if data_img is None:
        return {"push_8m": push_8m, "push_1g": push_8m * 128, "disk_read": None}
    t = time.monotonic()
    # vdb is the lab's own data disk (the injected dump); the guest finds this one by serial.
    lab.virsh("attach-disk", db, data_img, "vdz", "--targetbus", "virtio", "--subdriver",
              "raw", "--mode", "readonly", "--serial", "bench-data", "--live")
    script = ("dev=; i=0; while [ -z \"$dev\" ] && [ $i -lt 100 ]; do "
              "for s in /sys/block/vd*/serial; do [ \"$(cat $s)\" = bench-data ] && "
              "dev=$(basename $(dirname $s)); done; [ -n \"$dev\" ] || sleep 0.1; i=$((i+1)); "
              "done; [ -n \"$dev\" ] && mkdir -p /mnt/data && mount -o ro /dev/$dev /mnt/data && "
              "cat /mnt/data/dump.sql > /dev/null && umount /mnt/data")
    run(lab.reclab_cmd("exec", "--timeout", "900", report["run"], "db", "--", script))
    disk_read = time.monotonic() - t
    lab.virsh("detach-disk", db, "vdz", "--live", check=False)
    return {"push_8m": push_8m, "push_1g": push_8m * 128, "disk_read": disk_read}


# ---------------------------------------------------------------- restore points

def bench_points(table, opts):
    """Choose a restore point among 100 000 dump files (reclab::points, best of 5 inside each
    run) vs a shell pipeline doing the same (find | sort | awk)."""
    d = os.path.join(DEV_DIR, "bench", "points-100k")
    if not os.path.isdir(d) or len(os.listdir(d)) != 100_000:
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        log("creating 100 000 empty dump files (once)")
        base = 1_700_000_000
        for i in range(100_000):
            t = time.gmtime(base + 300 * i)
            open(os.path.join(d, time.strftime("erp-%Y%m%d-%H%M%S.sql", t)), "w").close()
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_700_000_000 + 300 * 99_000 + 10))
    ours, theirs = [], []
    for _ in range(opts.runs):
        _, cp = run([tool("bench_choose"), d, "erp-%Y%m%d-%H%M%S.sql", at])
        ours.append(float(cp.stdout.split("ms=")[1].split()[0]) / 1000)
        cutoff = "erp-" + at[0:4] + at[5:7] + at[8:10] + "-" + at[11:13] + at[14:16] + at[17:19]
        t = time.monotonic()
        run(["sh", "-c", f"find {d} -name 'erp-*.sql' -printf '%f\\n' | sort | "
                         f"awk '$0 <= \"{cutoff}.sql\"' | tail -n 1 > /dev/null"])
        theirs.append(time.monotonic() - t)
    value = median(ours)
    table.add("choose a restore point among 100 000 dump files", value, "s",
              "shell pipeline (find, sort, awk, tail)", median(theirs), target="< 100 ms",
              passed=value < 0.1, runs=opts.runs)


# One drill of the db-only bisect lab on the demo estate: 18.0-19.0 s each in a real
# `reclab bisect` of 5 drills (2 shared vCPUs, TCG, 2026-12-01); see docs/bisect.md.
BISECT_DRILL_S = 18.5


def bench_bisect(table, opts):
    """Drills and time to the answer of `reclab bisect` for 24 and 168 restore points vs a
    linear newest-first scan. The drill counts come from the real search (examples/bench_bisect
    runs reclab::drill::bisect::search over every boundary of a monotonic point set); 168 real
    drills under TCG would take hours, so the time is those counts times one real drill's wall
    time (--bisect-drill-s, measured on a db-only lab of the demo estate by
    tests/e2e_bisect.rs / reclab bisect; see docs/bisect.md)."""
    _, cp = run([tool("bench_bisect"), "24", "168"])
    drill_s = opts.bisect_drill_s
    for line in cp.stdout.splitlines():
        r = json.loads(line)
        n = r["n"]
        table.add(f"bisect over {n} restore points: drills to the answer, worst case over every "
                  "boundary", r["bisect_max"], "drills", "linear newest-first scan",
                  r["linear_max"], target=f"<= ceil(log2 n) + 1 = {r['budget']}",
                  passed=r["bisect_max"] <= r["budget"],
                  note="counted by the real search over the point set")
        table.add(f"bisect over {n} restore points: drills to the answer, mean over every boundary",
                  r["bisect_mean"], "drills", "linear newest-first scan", r["linear_mean"],
                  note="counted by the real search over the point set")
        table.add(f"bisect over {n} restore points: time to the answer, mean", r["bisect_mean"] * drill_s,
                  "s", "linear newest-first scan", r["linear_mean"] * drill_s,
                  note=f"drill count x one real db-only drill's wall time, {drill_s:.0f} s; not "
                       f"{n} real drills")


# ---------------------------------------------------------------- the real estate

REAL_SANDBOX = "bench-real"
REAL_AT_HOURS = 3
E2E_LOCK = "/tmp/reclab-e2e.lock"
PLAIN_NET = "bench-plain"


class E2eLock:
    """The helpers' shared lock for long VM work (flock /tmp/reclab-e2e.lock), held by this
    process only: its descriptor is close-on-exec, so no daemon started meanwhile inherits it."""

    def __enter__(self):
        import fcntl
        self.f = open(E2E_LOCK, "a")
        log(f"waiting for {E2E_LOCK}")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self.f.close()


class RealEstate:
    """A real estate (Debian 12 guests, PostgreSQL, virtnbdbackup chains) in its own sandbox."""

    def __init__(self, work):
        self.state = os.path.join(work, "state-real")
        os.makedirs(self.state, exist_ok=True)
        self.dir = os.path.join(DEV_DIR, "estate", REAL_SANDBOX)
        self.plain_dir = os.path.join(work, "plain-real")
        self.uri = None

    def start(self):
        # The sandbox first, outside the lock (its daemons must not inherit it).
        _, cp = run([SANDBOX_CMD, "start", REAL_SANDBOX])
        self.uri = cp.stdout.strip()
        run([ESTATE_CMD, "destroy", REAL_SANDBOX], check=False)
        log(f"creating the real estate in sandbox '{REAL_SANDBOX}' (--hours 4; minutes)")
        with E2eLock():
            took, _ = run([ESTATE_CMD, "create", REAL_SANDBOX, "--kind", "real", "--hours", "4"])
        log(f"real estate created in {took:.0f} s")
        with open(os.path.join(self.dir, "estate.json")) as f:
            self.estate = json.load(f)
        # The lab file's paths are relative to it: next to the estate's backups/ (as scripts/demo).
        self.lab = os.path.join(self.dir, "real.toml")
        with open(os.path.join(REPO, "examples/real.toml")) as f:
            text = f.read()
        # The real guests have no nc, which reclab's `ready.tcp` probe runs in the guest: the
        # probes are dropped (both ways then wait for the guest agents), and the dump restore of
        # pg waits for PostgreSQL (WAL replay) with its own pg_isready instead.
        text, n = re.subn(r", tcp = \d+ \}", " }", text)
        text, m = re.subn(r"(?m)^restore = \[\n(?=  # Keep the database)",
                          'restore = [\n  "until runuser -u postgres -- pg_isready -q; '
                          'do sleep 1; done",\n', text)
        if n != 2 or m != 1:
            die("could not drop the tcp readiness probes from examples/real.toml")
        with open(self.lab, "w") as f:
            f.write(text)
        # Production idles on the same 2 cores; paused, it adds no noise (both ways read only
        # its backups).
        for d in self.estate["domains"]:
            self.virsh("suspend", d["name"], check=False)
        return took

    def stop(self):
        runs = os.path.join(self.state, "runs")
        for run_id in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
            run(self.reclab_cmd("down", run_id), check=False)
        self.plain_cleanup()
        run(self.reclab_cmd("gc"), check=False)
        run([ESTATE_CMD, "destroy", REAL_SANDBOX], check=False)
        run([SANDBOX_CMD, "stop", REAL_SANDBOX], check=False)

    def in_sandbox(self, *cmd):
        return [SANDBOX_CMD, "exec", REAL_SANDBOX, "env", f"RECLAB_CONNECT={self.uri}", *cmd]

    def reclab_cmd(self, *args):
        return self.in_sandbox(RECLAB, "--state-dir", self.state, *args)

    def virsh(self, *args, check=True):
        return run(["virsh", "-q", "-c", self.uri, *args], check=check)[1]

    def drill(self):
        """`reclab run examples/real.toml --at "3h ago" --json`: wall time and its report."""
        with E2eLock():
            took, out, err, code, _ = run_rss(
                self.reclab_cmd("run", self.lab, "--at", f"{REAL_AT_HOURS}h ago", "--json"),
                check=False)
        try:
            report = json.loads(out)
        except ValueError:
            die(f"reclab run printed no JSON report (exit {code}):\n{err.strip()[-3000:]}")
        if code != 0:
            log(f"reclab run exited {code} ({report.get('result')}): {report.get('errors')}")
        return took, code, report

    def point(self):
        return next(p for p in self.estate["points"]
                    if p["hours_before_now"] == REAL_AT_HOURS)

    def chain_files(self, role):
        """The data files of ROLE's chain up to the checkpoint of 3h ago, in chain order."""
        files = []
        for p in sorted(self.estate["points"], key=lambda p: -p["hours_before_now"]):
            if p["hours_before_now"] >= REAL_AT_HOURS:
                files += p["vm"][role]["data_files"]
        return files

    def plain_xml(self, dom, checkpoint, disk, nvram):
        """The checkpoint's vmconfig, edited minimally: new name, no uuid/ids/runtime paths,
        the restored disk, the isolated network, its own NVRAM copy."""
        import xml.etree.ElementTree as ET
        tree = ET.parse(os.path.join(dom["backup_dir"], f"vmconfig.{checkpoint}.xml"))
        root = tree.getroot()
        root.attrib.pop("id", None)
        root.find("name").text = f"plain-{dom['role']}"
        root.remove(root.find("uuid"))
        if nvram:
            root.find("os/nvram").text = nvram
        devices = root.find("devices")
        for d in devices.findall("disk"):
            src = d.find("source")
            src.set("file", disk)
            src.attrib.pop("index", None)
            bs = d.find("backingStore")
            if bs is not None:
                d.remove(bs)
        for i in devices.findall("interface"):
            i.find("source").attrib.clear()
            i.find("source").set("network", PLAIN_NET)
            t = i.find("target")
            if t is not None:
                i.remove(t)
        for tag in ("serial", "console", "channel"):
            for c in devices.findall(tag):
                # The running domain's pty, log file and agent socket paths.
                c.attrib.pop("tty", None)
                for sub in ("source", "log"):
                    for e in c.findall(sub):
                        c.remove(e)
                t = c.find("target")
                if t is not None:
                    t.attrib.pop("state", None)
        for g in devices.findall("graphics"):
            g.attrib.pop("port", None)
            g.set("autoport", "yes")
        path = os.path.join(self.plain_dir, f"plain-{dom['role']}.xml")
        tree.write(path)
        return path

    def plain(self):
        """The plain way at the same checkpoint: virtnbdrestore each VM's chain, define it from
        its vmconfig (minimal edits) on an isolated network, start it in the lab's tiers and wait
        for its guest agent. No dumps, no checks. Returns (total seconds, restore seconds)."""
        shutil.rmtree(self.plain_dir, ignore_errors=True)
        os.makedirs(self.plain_dir)
        point = self.point()
        roles = ["pg", "web", "client"]  # the lab's tiers: pg, then web, then client
        doms = {d["role"]: d for d in self.estate["domains"]}
        with E2eLock():
            t = time.monotonic()
            xmls = {}
            for role in roles:
                dom = doms[role]
                checkpoint = point["vm"][role]["checkpoint"]
                out = os.path.join(self.plain_dir, role)
                os.makedirs(out)
                run(self.in_sandbox("virtnbdrestore", "-U", self.uri, "-i", dom["backup_dir"],
                                    "-o", out, "--sequence", ",".join(self.chain_files(role))))
                disk = os.path.join(out, "vda")
                nvram = None
                if dom.get("nvram"):
                    name = os.path.basename(dom["nvram"])
                    nvram = os.path.join(out, name)
                    shutil.copy(os.path.join(dom["backup_dir"], f"{name}.{checkpoint}"), nvram)
                xmls[role] = self.plain_xml(dom, checkpoint, disk, nvram)
            restored = time.monotonic() - t
            net = os.path.join(self.plain_dir, "net.xml")
            with open(net, "w") as f:
                # Isolated: no <forward>, no address, no DHCP; in the sandbox's namespace.
                f.write(f"<network><name>{PLAIN_NET}</name><bridge name='bplain0'/></network>\n")
            self.virsh("net-create", net)
            for role in roles:
                self.virsh("define", xmls[role])
                self.virsh("start", f"plain-{role}")
                deadline = time.monotonic() + 900
                while True:
                    cp = self.virsh("qemu-agent-command", f"plain-{role}", "--timeout", "1",
                                    '{"execute":"guest-ping"}', check=False)
                    if cp.returncode == 0:
                        break
                    if time.monotonic() > deadline:
                        die(f"plain way: plain-{role} never answered guest-ping")
                    time.sleep(0.5)
            took = time.monotonic() - t
            self.plain_cleanup()
        return took, restored

    def plain_cleanup(self):
        if self.uri is None:
            return
        for role in ("pg", "web", "client"):
            self.virsh("destroy", f"plain-{role}", check=False)
            self.virsh("undefine", "--nvram", f"plain-{role}", check=False)
        self.virsh("net-destroy", PLAIN_NET, check=False)
        shutil.rmtree(self.plain_dir, ignore_errors=True)


def verdict_s(drill):
    """Seconds from the start of the drill to its verdict: its up and verify phases (the
    recovery time when verified; also defined when a check failed)."""
    return sum(p["duration_ms"] for p in drill["phases"] or []
               if p["name"] in ("up", "verify")) / 1000


def real_rows(table, d):
    miss, hit, plain = d["miss"], d["hit"], d["plain_s"]
    plain_name = ("plain way: virtnbdrestore ×3, virsh define + start, guest-ping loop, "
                  "same tiers")
    note_plain = ("reclab's rows include the dump restores (pg_restore ×2, uploads) and 10 checks "
                  "with isolation; the plain way restores the images only and runs no check")
    verified = miss["exit"] == 0 and hit["exit"] == 0
    what = ("recovery time (`recovery_time_ms`)" if verified else
            f"time to the verdict (up + verify phases; result {miss['result']}/{hit['result']})")
    m = miss["recovery_s"] if verified else verdict_s(miss)
    h = hit["recovery_s"] if verified else verdict_s(hit)
    table.add(f"real estate (3 Debian VMs) drill at 3h ago, {what}, first drill (restore cache "
              "miss)", m, "s", plain_name, plain, runs=1, note=note_plain)
    table.add(f"real estate drill at 3h ago, {what}, second drill (restore cache hit)", h, "s",
              plain_name, plain, runs=1, note=note_plain)
    table.add(f"real estate drill at 3h ago, {what}: cache hit vs miss", h, "s",
              "first drill (miss)", m, runs=1)
    table.add("real estate drill at 3h ago, wall time of `reclab run` (miss; restore, up, dumps, "
              "checks, report, down)", miss["wall_s"], "s", "-", None, runs=1)
    table.add("real estate drill at 3h ago, wall time of `reclab run` (hit)", hit["wall_s"], "s",
              "first drill (miss)", miss["wall_s"], runs=1)
    table.add("real estate: restore the 3 VM images at 3h ago (miss; `image_restores` seconds)",
              miss["restore_s"], "s", "plain way: virtnbdrestore ×3", d["plain_restore_s"],
              runs=1)
    table.add("real estate: restore the 3 VM images at 3h ago (hit; `image_restores` seconds)",
              hit["restore_s"], "s", "-", None, runs=1,
              note="restore cache lookups of the entries the first drill made")


def bench_real(table, opts, work):
    """The real-estate drill at 3h ago: reclab's first drill (restore cache miss), its second
    (hit), and the plain way (virtnbdrestore + virsh define + start + guest-ping), one run each
    (a drill takes minutes under TCG)."""
    estate = RealEstate(work)
    details = {}
    try:
        details["estate_create_s"] = estate.start()
        drills = []
        for label in ("miss", "hit"):
            log(f"real estate: reclab run --at '{REAL_AT_HOURS}h ago' "
                f"(restore cache {label} expected)")
            took, code, report = estate.drill()
            restores = report.get("image_restores", [])
            caches = sorted({r["cache"] for r in restores})
            if caches != [label]:
                die(f"expected every image restore to be a cache {label}, got {restores}")
            rt = report.get("recovery_time_ms")
            drills.append({"wall_s": took, "exit": code, "result": report.get("result"),
                           "recovery_s": None if rt is None else rt / 1000,
                           "restore_s": sum(r["seconds"] for r in restores),
                           "image_restores": restores, "phases": report.get("phases")})
            log(f"  {label}: wall {took:.1f} s, recovery {drills[-1]['recovery_s']} s, "
                f"restores {drills[-1]['restore_s']:.1f} s, result {report.get('result')}")
        log("real estate: the plain way (virtnbdrestore + virsh define + start + guest-ping)")
        plain, plain_restore = estate.plain()
        log(f"  plain: {plain:.1f} s (restores {plain_restore:.1f} s)")
    finally:
        if not opts.keep:
            estate.stop()
    miss, hit = drills
    details.update({"miss": miss, "hit": hit, "plain_s": plain, "plain_restore_s": plain_restore})
    real_rows(table, details)
    return details


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Measure reclab side by side with the alternatives, in one run: medians of "
                    "several runs, each with its baseline and ratio. Prints one table.")
    ap.add_argument("--runs", type=int, default=5, help="runs of fast items (default 5)")
    ap.add_argument("--slow-runs", type=int, default=3,
                    help="runs of slow items: full copies, lab up/down (default 3)")
    ap.add_argument("--bisect-drill-s", type=float, default=BISECT_DRILL_S,
                    help="wall time of one real drill of the db-only lab for the bisect rows "
                         f"(default {BISECT_DRILL_S}, measured; see docs/bisect.md)")
    ap.add_argument("--only", default="clone,inject,lab,points,bisect",
                    help="comma-separated subset of clone,inject,lab,points,bisect,real (real: the "
                         "real-estate drill, cache miss and hit, vs the plain way; ~15 min, "
                         "not in the default set)")
    ap.add_argument("--json", help="write the results as JSON to this file")
    ap.add_argument("--md", help="write the table and the machine as Markdown to this file")
    ap.add_argument("--keep", action="store_true", help="keep the bench sandbox and estate")
    opts = ap.parse_args()
    only = set(opts.only.split(","))
    unknown = only - {"clone", "inject", "lab", "points", "bisect", "real"}
    if unknown:
        die(f"--only: unknown item(s) {', '.join(sorted(unknown))}; "
            "choose from clone,inject,lab,points,bisect,real")
    if not os.access(RECLAB, os.X_OK):
        die(f"{RECLAB} is not an executable reclab: run through scripts/bench (it builds it)")
    for name in BENCH_TOOLS if only - {"real"} else ():
        if not os.access(tool(name), os.X_OK):
            die(f"{tool(name)} is not built: run through scripts/bench (it builds it)")
    table = Table()
    extra = {}
    work = tempfile.mkdtemp(prefix="bench-", dir=DEV_DIR)
    try:
        if "clone" in only:
            bench_clone(table, opts, work)
        data_img = bench_inject_host(table, opts, work) if "inject" in only else None
        if "lab" in only:
            extra = bench_lab(table, opts, work, data_img)
        if "points" in only:
            bench_points(table, opts)
        if "bisect" in only:
            bench_bisect(table, opts)
        if "real" in only:
            extra["real"] = bench_real(table, opts, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    m = machine()
    head = (f"{m['nproc']} vCPU, {m['memory_gib']} GiB, {m['os']}, kernel {m['kernel']}, "
            f"{m['qemu']}, {m['libvirt']}, {m['accel']}")
    print(f"reclab bench, {m['date']}\nmachine: {head}\n")
    print(table.markdown())
    result = {"machine": m, "rows": table.rows, "details": extra}
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(result, f, indent=2)
    if opts.md:
        with open(opts.md, "w") as f:
            f.write(f"Measured {m['date']} on: {head}; CPU {m['cpu']}.\n\n{table.markdown()}\n")
    failed = [r for r in table.rows if r["pass"] is False]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
