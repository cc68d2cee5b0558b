//! Unwinding at every step, on the fakes (`hv::fake::FakeHv`, `lab::fake::FakeHost`): a
//! realistic plan (two segments with lab services, two boot tiers, a dump injection, an nvram,
//! an image restored from a virtnbdbackup chain into the restore cache with its kernel copied)
//! fails after each step and inside each call of each step, crashes after each step, and is
//! torn down resource by resource twice; every time, nothing is left (also nothing of the
//! copy of production's default TPM state in the swtpm directory).

use anyhow::{Result, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::execute::StepNo;
use super::{UpOpts, UpReport, bring_up, gc, teardown};
use crate::base::names::RunId;
use crate::hv::Hypervisor;
use crate::hv::fake::FakeHv;
use crate::lab::fake::FakeHost;
use crate::lab::host::Host;
use crate::lab::journal::RunDir;
use crate::lab::lock::RunLock;
use crate::lab::plan::{self, Plan, PlanInputs, Step};
use crate::lab::record::Resource;
use crate::lab::resolved::{BackupRestore, Layer, ResolvedDisk, ResolvedVm};
use crate::restore::record::{DataDiskFile, PlannedInjection};

const LAB: &str = r#"name = "erp"
accel = "tcg"
tpm_state_dir = "swtpm"

[segment.lan]
production = ["prod"]
hosts = { "db.prod.example" = "10.20.0.10" }

[segment.lan.services]
address = "10.20.0.1/24"
dns = true
dhcp = true

[segment.dmz]
production = ["dmz"]

[segment.dmz.services]
address = "10.30.0.1/24"
dns = true

[[vm]]
name = "db"
from = { xml = "db.xml", disks = { vda = "db.qcow2" } }
ready = { timeout = "5s" }
dhcp = { ip = "10.20.0.10", segment = "lan" }

[vm.dumps]
dir = "dumps"
pattern = "erp-%Y%m%d-%H%M.sql"
restore = ["sqlite3 /var/lib/erp/erp.db < {dump}"]

[[vm]]
name = "web"
from = { xml = "web.xml", disks = { vda = "web.qcow2" } }
after = ["db"]
ready = { timeout = "5s" }
"#;

/// A production domain on networks `prod` (and `dmz`), with an nvram when `nvram` is given.
fn production_xml(name: &str, disk: &Path, nvram: Option<&Path>, dmz: bool) -> String {
    let nvram = nvram
        .map(|p| format!("\n    <nvram>{}</nvram>", p.display()))
        .unwrap_or_default();
    let dmz = if dmz {
        "\n    <interface type='network'>\n      <mac address='52:54:00:30:00:0b'/>\n      <source network='dmz'/>\n      <model type='virtio'/>\n    </interface>"
    } else {
        ""
    };
    format!(
        "<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>{nvram}
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:20:00:0a'/>
      <source network='prod'/>
      <model type='virtio'/>
    </interface>{dmz}
  </devices>
</domain>
",
        disk.display()
    )
}

/// The uuid of production's db domain, whose TPM keeps libvirt's default state.
const DB_UUID: &str = "5b0f2b9e-6a3c-4d1e-9a57-0c1d2e3f4a5b";

/// The production side of the lab, in a temporary directory, and the plan of a run of it.
struct Estate {
    tmp: tempfile::TempDir,
    plan: Plan,
    /// Production files, which must survive every run unchanged.
    production: Vec<(PathBuf, Vec<u8>)>,
}

impl Estate {
    fn new() -> Estate {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path();
        let db_disk = p.join("db.qcow2");
        let web_disk = p.join("web.qcow2");
        let nvram = p.join("db-nvram.fd");
        let dump = p.join("dumps/erp-20261126-1200.sql");
        std::fs::create_dir_all(p.join("dumps")).unwrap();
        let mut production = Vec::new();
        for (path, bytes) in [
            (&db_disk, b"QFI\xfb db".to_vec()),
            (&web_disk, b"QFI\xfb web".to_vec()),
            (&nvram, b"nvram vars".to_vec()),
            (&dump, b"create table t(x);\n".to_vec()),
        ] {
            std::fs::write(path, &bytes).unwrap();
            production.push((path.clone(), bytes));
        }
        // The web VM also has a writable firmware loader and TPM state in a directory:
        // both go to private copies in the run directory.
        let loader = p.join("web-loader.fd");
        let tpm = p.join("web-tpm");
        std::fs::create_dir_all(&tpm).unwrap();
        for (path, bytes) in [
            (loader.clone(), b"firmware".to_vec()),
            (tpm.join("tpm2-00.permall"), b"tpm state".to_vec()),
        ] {
            std::fs::write(&path, &bytes).unwrap();
            production.push((path, bytes));
        }
        // The db VM has an emulated TPM with libvirt's default state, under its uuid in the
        // swtpm directory: the lab gets a copy under its own uuid there.
        let db_tpm = p.join("swtpm").join(DB_UUID).join("tpm2");
        std::fs::create_dir_all(&db_tpm).unwrap();
        std::fs::write(db_tpm.join("tpm2-00.permall"), b"db tpm").unwrap();
        production.push((db_tpm.join("tpm2-00.permall"), b"db tpm".to_vec()));
        let db_xml = production_xml("prod-db", &db_disk, Some(&nvram), false)
            .replace(
                "</name>",
                &format!("</name>\n  <uuid>{}</uuid>", DB_UUID.to_uppercase()),
            )
            .replace(
                "  </devices>",
                "    <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>\n  </devices>",
            );
        // Its own MAC: two VMs with one MAC on a segment are refused.
        let web_xml = production_xml("prod-web", &web_disk, None, true)
            .replace("52:54:00:20:00:0a", "52:54:00:20:00:0c")
            .replace(
                "hvm</type>",
                &format!(
                    "hvm</type>\n    <loader readonly='no' type='pflash'>{}</loader>",
                    loader.display()
                ),
            )
            .replace(
                "  </devices>",
                &format!(
                    "    <tpm model='tpm-crb'><backend type='emulator' version='2.0'>\
                     <source type='dir' path='{}'/></backend></tpm>\n  </devices>",
                    tpm.display()
                ),
            );
        // The web VM comes from a virtnbdbackup chain: restored into the restore cache, its
        // kernel from the copy the backup saved.
        let backups = p.join("backups/web");
        std::fs::create_dir_all(&backups).unwrap();
        for (name, bytes) in [
            ("vda.full.data", b"meta full".to_vec()),
            ("vda.inc.virtnbdbackup.1.data", b"meta inc".to_vec()),
            ("vmlinuz.virtnbdbackup.1", b"kernel".to_vec()),
        ] {
            std::fs::write(backups.join(name), &bytes).unwrap();
            production.push((backups.join(name), bytes));
        }
        let cache = p.join("state/restore-cache");
        let backup = BackupRestore {
            dir: backups.clone(),
            checkpoint: "virtnbdbackup.1".into(),
            key: "0123456789abcdef0123456789abcdef".into(),
            cache: cache.clone(),
            disks: vec![(
                "vda".into(),
                vec![
                    "vda.full.data".into(),
                    "vda.inc.virtnbdbackup.1.data".into(),
                ],
            )],
            bytes: 17,
            reads: vec![
                backups.join("vda.full.data"),
                backups.join("vda.inc.virtnbdbackup.1.data"),
            ],
        };
        let web_xml = web_xml.replace(
            "hvm</type>",
            "hvm</type>\n    <kernel>/boot/vmlinuz</kernel>",
        );
        std::fs::write(p.join("db.xml"), &db_xml).unwrap();
        std::fs::write(p.join("web.xml"), &web_xml).unwrap();
        let spec = crate::spec::parse(LAB, &p.join("lab.toml")).unwrap();

        let resolved: Vec<ResolvedVm> = [("db", &db_xml, &db_disk), ("web", &web_xml, &web_disk)]
            .into_iter()
            .map(|(name, xml, disk)| {
                let facts = crate::xml::facts::facts(xml).unwrap();
                let web = name == "web";
                ResolvedVm {
                    name: name.into(),
                    origin: format!("file {name}.xml"),
                    xml: xml.clone(),
                    nvram: facts.nvram.clone().map(PathBuf::from),
                    facts,
                    disks: vec![ResolvedDisk {
                        target: "vda".into(),
                        chain: vec![Layer {
                            path: if web {
                                backup.entry().join("vda")
                            } else {
                                disk.clone()
                            },
                            format: "qcow2".into(),
                            block: false,
                            virtual_size: 1 << 30,
                        }],
                    }],
                    boot_files: if web {
                        vec![("kernel".into(), backups.join("vmlinuz.virtnbdbackup.1"))]
                    } else {
                        vec![]
                    },
                    backup: web.then(|| backup.clone()),
                }
            })
            .collect();
        let dumps = spec.vms[0].dumps.clone().unwrap();
        let record = serde_json::from_value(json!({
            "vm": "db", "at": "latest",
            "image": { "name": "db.qcow2", "time": "2026-11-26T02:00:00Z", "source": "files" },
            "dump": { "name": "erp-20261126-1200.sql", "time": "2026-11-26T12:00:00Z",
                      "source": dumps.dir.display().to_string() },
            "sha256": "00", "bytes": 19, "verified_against": [],
            "skew_seconds": 36000, "skew": "10h", "mount": dumps.mount,
            "commands": [], "durations": {}
        }))
        .unwrap();
        let injection = PlannedInjection {
            vm: "db".into(),
            commands: vec![format!(
                "sqlite3 /var/lib/erp/erp.db < {}/erp-20261126-1200.sql",
                dumps.mount
            )],
            dumps,
            files: vec![DataDiskFile {
                name: "erp-20261126-1200.sql".into(),
                source: dump.clone(),
                sha256: None,
            }],
            record,
        };
        let run = RunId::new();
        let state = p.join("state");
        let plan = plan::plan(&PlanInputs {
            spec: &spec,
            resolved: &resolved,
            run: &run,
            uri: "fake:///",
            run_dir: &RunDir::new(&state, &run).path,
            now: jiff::Timestamp::now(),
            ttl: std::time::Duration::from_secs(3600),
            passwords: &["pw-db".into(), "pw-web".into()],
            injections: &[injection],
        })
        .unwrap();
        Estate {
            tmp,
            plan,
            production,
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.tmp.path().join("state")
    }

    fn dir(&self) -> RunDir {
        RunDir {
            path: self.plan.run_dir.clone(),
        }
    }

    fn up(
        &self,
        hv: &FakeHv,
        host: &FakeHost,
        after_step: &mut dyn FnMut(&RunDir, StepNo, &Step) -> Result<()>,
    ) -> Result<UpReport> {
        // Every run restores (a miss), so that every run makes the same calls.
        let _ = std::fs::remove_dir_all(self.state_dir().join("restore-cache"));
        bring_up(
            &self.plan,
            hv,
            host,
            &UpOpts::default(),
            Instant::now(),
            after_step,
            &mut None,
        )
    }

    /// Nothing of the run is left on the fakes or on disk, and production is unchanged.
    fn assert_nothing_left(&self, hv: &FakeHv, host: &FakeHost, when: &str) {
        assert_eq!(hv.domain_names(), Vec::<String>::new(), "{when}: domains");
        assert_eq!(hv.network_names(), Vec::<String>::new(), "{when}: networks");
        assert_eq!(host.rules(), vec![], "{when}: firewall rules");
        assert_eq!(
            host.namespaces(),
            Vec::<String>::new(),
            "{when}: namespaces"
        );
        assert!(host.links().is_empty(), "{when}: links {:?}", host.links());
        assert!(
            host.daemons().is_empty(),
            "{when}: daemons {:?}",
            host.daemons()
        );
        assert!(
            host.owners().is_empty(),
            "{when}: owner registrations {:?}",
            host.owners()
        );
        assert!(
            !self.plan.run_dir.exists(),
            "{when}: the run directory is left"
        );
        let runs: Vec<_> = std::fs::read_dir(RunDir::runs_root(&self.state_dir()))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        assert!(
            runs.is_empty(),
            "{when}: left in the state directory: {runs:?}"
        );
        // Of the restore cache only complete entries may stay: no lease, no half restore.
        let cache = self.state_dir().join("restore-cache");
        let leases: Vec<_> = std::fs::read_dir(cache.join("leases"))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        assert!(leases.is_empty(), "{when}: leases left: {leases:?}");
        let tmps: Vec<_> = std::fs::read_dir(&cache)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(".tmp-"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(tmps.is_empty(), "{when}: half restores left: {tmps:?}");
        for (path, bytes) in &self.production {
            assert_eq!(
                &std::fs::read(path).unwrap(),
                bytes,
                "{when}: {}",
                path.display()
            );
        }
        let tpm_states: Vec<_> = std::fs::read_dir(self.tmp.path().join("swtpm"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(tpm_states, vec![DB_UUID], "{when}: tpm states left");
    }
}

/// Fresh fakes: a guest whose agent runs every script successfully, except pings (the
/// isolation probe of the hypervisor's address), which get no answer.
fn fakes() -> (FakeHv, FakeHost) {
    let hv = FakeHv::new();
    let started: Arc<Mutex<Vec<String>>> = Arc::default();
    hv.set_agent(move |_, req| {
        let mut started = started.lock().unwrap();
        let ret = match req["execute"].as_str().unwrap_or("") {
            "guest-ping" => json!({}),
            "guest-info" => json!({ "version": "8.2.0", "supported_commands": [
                { "name": "guest-exec", "enabled": true },
                { "name": "guest-exec-status", "enabled": true } ] }),
            "guest-exec" => {
                let script = req["arguments"]["arg"][1]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                started.push(script);
                json!({ "pid": started.len() })
            }
            "guest-exec-status" => {
                let pid = req["arguments"]["pid"].as_u64().unwrap() as usize;
                let code = if started[pid - 1].contains("exec ping ") {
                    1
                } else {
                    0
                };
                json!({ "exited": true, "exitcode": code })
            }
            other => bail!("the fake guest's agent does not know {other}"),
        };
        Ok::<Value, anyhow::Error>(json!({ "return": ret }))
    });
    (hv, FakeHost::new())
}

fn no_hook(_: &RunDir, _: StepNo, _: &Step) -> Result<()> {
    Ok(())
}

/// The plan covers what the test claims to cover.
fn assert_realistic(plan: &Plan) {
    let count = |f: fn(&Step) -> bool| plan.steps.iter().filter(|s| f(s)).count();
    assert_eq!(count(|s| matches!(s, Step::StartServices { .. })), 2);
    assert_eq!(count(|s| matches!(s, Step::BootTier { .. })), 2);
    assert_eq!(count(|s| matches!(s, Step::BuildDataDisk { .. })), 1);
    assert_eq!(count(|s| matches!(s, Step::CopyNvram { .. })), 1);
    assert_eq!(count(|s| matches!(s, Step::RestoreImage(_))), 1);
    // The writable loader of web, and its kernel.
    assert_eq!(
        count(|s| matches!(s, Step::CopyPrivate { dir: false, .. })),
        2
    );
    assert_eq!(
        count(|s| matches!(s, Step::CopyPrivate { dir: true, .. })),
        2
    );
    // The lab domain uses the private copies, never production's files; the copy of a TPM's
    // default state is named by the lab domain's uuid.
    for vm in &plan.vms {
        for c in &vm.copies {
            if c.missing_ok {
                let lab_uuid = c.to.rsplit('/').next().unwrap();
                assert!(
                    vm.xml.contains(&format!("<uuid>{lab_uuid}</uuid>")),
                    "{c:?}"
                );
                assert!(c.from.ends_with(DB_UUID), "{c:?}");
                continue;
            }
            assert!(
                c.to.starts_with(&plan.run_dir.display().to_string()),
                "{c:?}"
            );
            assert!(vm.xml.contains(&c.to), "{} uses {}", vm.name, c.to);
            assert!(
                !vm.xml.contains(&c.from),
                "{} still names {}",
                vm.name,
                c.from
            );
        }
    }
}

/// How many calls each fake had received when each step ended: `(hv, host)` per step.
fn calls_per_step(estate: &Estate) -> Vec<(usize, usize)> {
    let (hv, host) = fakes();
    let mut marks = Vec::new();
    estate
        .up(&hv, &host, &mut |_, _, _| {
            marks.push((hv.calls().len(), host.calls().len()));
            Ok(())
        })
        .unwrap();
    teardown::teardown(Some(&hv), &host, &estate.dir()).unwrap();
    estate.assert_nothing_left(&hv, &host, "after a successful run and its teardown");
    marks
}

#[test]
fn a_failure_after_any_step_or_in_any_call_of_it_unwinds_to_nothing() {
    let estate = Estate::new();
    assert_realistic(&estate.plan);
    let steps = estate.plan.steps.len();
    let marks = calls_per_step(&estate);
    assert_eq!(marks.len(), steps);

    for k in 1..=steps {
        let (hv, host) = fakes();
        let err = estate
            .up(&hv, &host, &mut |_, at, _| {
                if at.number == k {
                    bail!("injected fault after step {k}");
                }
                Ok(())
            })
            .unwrap_err();
        assert_eq!(err.to_string(), format!("injected fault after step {k}"));
        estate.assert_nothing_left(&hv, &host, &format!("fault after step {k}"));
    }

    let mut failed_in = vec![0; steps];
    for k in 0..steps {
        let (hv_from, host_from) = if k == 0 { (0, 0) } else { marks[k - 1] };
        let (hv_to, host_to) = marks[k];
        let hv_calls = (hv_from + 1..=hv_to).map(|n| (true, n));
        let host_calls = (host_from + 1..=host_to).map(|n| (false, n));
        for (on_hv, n) in hv_calls.chain(host_calls) {
            let (hv, host) = fakes();
            if on_hv {
                hv.fail_at(n);
            } else {
                host.fail_at(n);
            }
            let result = estate.up(&hv, &host, &mut no_hook);
            let call = if on_hv {
                hv.calls()[n - 1].clone()
            } else {
                host.calls()[n - 1].clone()
            };
            let when = format!(
                "failure of call {call:?} in step {} ({:?})",
                k + 1,
                estate.plan.steps[k]
            );
            match result {
                Err(e) => {
                    assert!(
                        format!("{e:?}").contains("injected failure"),
                        "{when}: {e:#}"
                    );
                    failed_in[k] += 1;
                }
                // Reads whose failure `up` rides out: a guest agent that does not answer
                // yet, a domain XML read for the isolation check's interface list.
                Ok(_) => {
                    assert!(
                        call.contains("guest-ping") || call.starts_with("domain_xml "),
                        "{when}: up succeeded"
                    );
                    teardown::teardown(Some(&hv), &host, &estate.dir()).unwrap();
                }
            }
            estate.assert_nothing_left(&hv, &host, &when);
        }
    }
    // Every step but the creation of the run directory calls the hypervisor or the host, and
    // a failure there fails `up`.
    for (k, n) in failed_in.iter().enumerate().skip(1) {
        assert!(
            *n > 0,
            "no call of step {} ({:?}) failed up",
            k + 1,
            estate.plan.steps[k]
        );
    }
}

#[test]
fn a_crash_after_any_step_leaves_a_journal_that_gc_replays_to_nothing() {
    let estate = Estate::new();
    let steps = estate.plan.steps.len();
    for k in 1..=steps {
        let (hv, host) = fakes();
        let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            estate.up(&hv, &host, &mut |_, at, _| {
                if at.number == k {
                    panic!("simulated crash after step {k}");
                }
                Ok(())
            })
        }));
        assert!(crashed.is_err(), "step {k}: up did not crash");
        let dir = estate.dir();
        assert!(
            dir.path.exists(),
            "step {k}: the crash left no run directory"
        );
        // The reclab process that was creating the run is gone (as after a SIGKILL).
        let mut rec = dir
            .load_record()
            .unwrap()
            .expect("run.json written by step 1");
        rec.owner_start = rec.owner_start.wrapping_add(1);
        dir.save_record(&rec).unwrap();

        let open = |_: &str| -> Result<Box<dyn Hypervisor>> { Ok(Box::new(hv.clone())) };
        let report = gc(&estate.state_dir(), false, Some("fake:///"), &host, &open).unwrap();
        assert_eq!(report.removed_runs.len(), 1, "step {k}: {report:?}");
        assert!(report.removed_runs[0].contains("orphaned"), "{report:?}");
        estate.assert_nothing_left(&hv, &host, &format!("gc after a crash after step {k}"));
    }
}

/// The record of the estate's run, rewritten by `change`.
fn rewrite_record(estate: &Estate, change: impl FnOnce(&mut crate::lab::record::RunRecord)) {
    let dir = estate.dir();
    let mut rec = dir.load_record().unwrap().expect("run.json");
    change(&mut rec);
    dir.save_record(&rec).unwrap();
}

#[test]
fn two_concurrent_downs_of_one_run_both_succeed_and_leave_nothing() {
    let estate = Estate::new();
    let (hv, host) = fakes();
    estate.up(&hv, &host, &mut no_hook).unwrap();
    assert!(!hv.domain_names().is_empty());
    let open = |_: &str| -> Result<Box<dyn Hypervisor>> { Ok(Box::new(hv.clone())) };
    let short = estate.plan.run.short().to_string();
    let state = estate.state_dir();
    let results: Vec<Result<usize>> = std::thread::scope(|s| {
        let downs: Vec<_> = (0..2)
            .map(|_| s.spawn(|| super::down(&state, &short, &host, &open)))
            .collect();
        downs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in results {
        assert_eq!(r.unwrap(), 1, "each down reports the run as removed");
    }
    estate.assert_nothing_left(&hv, &host, "after two concurrent downs");
}

#[test]
fn a_teardown_whose_domain_cannot_be_destroyed_keeps_the_lab_fenced() {
    let estate = Estate::new();
    let (hv, host) = fakes();
    estate.up(&hv, &host, &mut no_hook).unwrap();
    let before = snapshot(&hv, &host, &estate.dir());
    let rules = host.rules();
    assert!(!rules.is_empty(), "the lab has bridge hardening");
    let open = |_: &str| -> Result<Box<dyn Hypervisor>> { Ok(Box::new(hv.clone())) };
    // libvirt refuses to destroy one of the two domains.
    hv.fail_on("destroy_domain", 1);
    let err = super::down(&estate.state_dir(), "erp", &host, &open).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("could not remove everything"), "{msg}");
    assert!(msg.contains("stays fenced"), "{msg}");
    // The other domain is gone; the network, every firewall rule, the lab services and the
    // run directory are all still there: nothing opened a path out of the lab.
    assert_eq!(hv.domain_names().len(), estate.plan.vms.len() - 1);
    assert_eq!(hv.network_names().len(), 2, "both lab networks kept");
    assert_eq!(host.rules(), rules, "every firewall rule kept");
    assert_eq!(host.namespaces().len(), 2, "lab services kept");
    assert!(
        estate.dir().path.exists(),
        "the journal is kept for the next try"
    );
    assert_ne!(snapshot(&hv, &host, &estate.dir()), before);
    // The next down finishes the job.
    assert_eq!(
        super::down(&estate.state_dir(), "erp", &host, &open).unwrap(),
        1
    );
    estate.assert_nothing_left(&hv, &host, "a second down after a fenced teardown");
}

#[test]
fn a_run_whose_daemon_is_gone_loses_its_host_side_pieces_once_no_qemu_runs_it() {
    let estate = Estate::new();
    let (hv, host) = fakes();
    estate.up(&hv, &host, &mut no_hook).unwrap();
    let domains = hv.domain_names();
    // Connections are opened as LibvirtHv::open does: they fail while the daemon is down.
    let open = |_: &str| -> Result<Box<dyn Hypervisor>> { Ok(Box::new(hv.connect()?)) };
    hv.stop_daemon(true);
    // libvirtd is gone but a guest's QEMU still runs: nothing is removed, the lab stays
    // fenced, and the error names libvirtd and the running domain.
    host.set_vm_process(&domains[0], Some(4242));
    let before = snapshot(&hv, &host, &estate.dir());
    let err = super::down(&estate.state_dir(), "erp", &host, &open).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("cannot reach libvirtd") && msg.contains("still runs (QEMU pid 4242)"),
        "{msg}"
    );
    assert!(msg.contains("stays fenced"), "{msg}");
    assert_eq!(
        snapshot(&hv, &host, &estate.dir()),
        before,
        "nothing removed"
    );
    // Its QEMU ended too: the namespaces, dnsmasq, veths, rules and files go, and the run.
    host.set_vm_process(&domains[0], None);
    assert_eq!(
        super::down(&estate.state_dir(), "erp", &host, &open).unwrap(),
        1
    );
    assert_eq!(host.rules(), vec![]);
    assert!(host.namespaces().is_empty(), "{:?}", host.namespaces());
    assert!(host.links().is_empty(), "{:?}", host.links());
    assert!(host.daemons().is_empty(), "{:?}", host.daemons());
    assert!(!estate.dir().path.exists());
    // What the daemon still holds when it is back is swept by its tags.
    hv.stop_daemon(false);
    let rep = gc(&estate.state_dir(), false, Some("fake:///"), &host, &open).unwrap();
    assert_eq!(rep.removed_foreign.len(), domains.len() + 2, "{rep:?}");
    estate.assert_nothing_left(&hv, &host, "down without a daemon, then gc with it");
}

#[test]
fn gc_with_another_state_directory_leaves_a_live_lab_alone_and_sweeps_it_once_lost() {
    let estate = Estate::new();
    let (hv, host) = fakes();
    // The sweep undefines the lab's domains; libvirt then removes their TPM state.
    hv.set_swtpm_dir(&estate.tmp.path().join("swtpm"));
    estate.up(&hv, &host, &mut no_hook).unwrap();
    let short = estate.plan.run.short().to_string();
    assert_eq!(
        host.owners().get(&short),
        Some(&estate.plan.run_dir),
        "up registered its run directory as the owner"
    );
    let before = snapshot(&hv, &host, &estate.dir());
    let open = |_: &str| -> Result<Box<dyn Hypervisor>> { Ok(Box::new(hv.clone())) };
    // A reclab with another state directory, on the same hypervisor and host.
    let other = tempfile::tempdir().unwrap();
    let rep = gc(other.path(), false, Some("fake:///"), &host, &open).unwrap();
    assert!(rep.removed_foreign.is_empty(), "{rep:?}");
    assert_eq!(rep.kept.len(), 1, "{rep:?}");
    assert!(
        rep.kept[0].contains(&short) && rep.kept[0].contains("another state directory"),
        "{rep:?}"
    );
    assert_eq!(
        snapshot(&hv, &host, &estate.dir()),
        before,
        "the lab is untouched"
    );
    // Its run directory is lost: now it is nobody's, and the other state directory's gc
    // sweeps it (domains, networks, services, rules and the stale registration).
    std::fs::remove_dir_all(&estate.plan.run_dir).unwrap();
    let rep = gc(other.path(), false, Some("fake:///"), &host, &open).unwrap();
    assert!(rep.kept.is_empty(), "{rep:?}");
    assert!(!rep.removed_foreign.is_empty(), "{rep:?}");
    estate.assert_nothing_left(&hv, &host, "gc of a lost run from another state directory");
}

#[test]
fn gc_keeps_a_run_whose_lock_is_held_and_removes_it_once_released() {
    let estate = Estate::new();
    let (hv, host) = fakes();
    estate.up(&hv, &host, &mut no_hook).unwrap();
    // By its record the run is an orphan (being created, its process gone) ...
    rewrite_record(&estate, |rec| {
        rec.state = crate::lab::record::RunState::Creating;
        rec.owner_start = rec.owner_start.wrapping_add(1);
    });
    // ... but a live process holds its lock.
    let held = RunLock::acquire(&estate.dir()).unwrap().expect("run dir");
    let open = |_: &str| -> Result<Box<dyn Hypervisor>> { Ok(Box::new(hv.clone())) };
    let report = gc(&estate.state_dir(), false, Some("fake:///"), &host, &open).unwrap();
    assert!(report.removed_runs.is_empty(), "{report:?}");
    assert!(report.removed_foreign.is_empty(), "{report:?}");
    assert_eq!(report.kept.len(), 1, "{report:?}");
    assert!(estate.dir().path.exists());
    assert_eq!(hv.domain_names().len(), estate.plan.vms.len());
    drop(held);
    let report = gc(&estate.state_dir(), false, Some("fake:///"), &host, &open).unwrap();
    assert_eq!(report.removed_runs.len(), 1, "{report:?}");
    estate.assert_nothing_left(&hv, &host, "gc once the lock was released");
}

#[test]
fn a_lab_whose_drill_is_gone_is_collected_and_one_an_up_left_is_kept_until_expiry() {
    use crate::lab::record::Owner;
    let estate = Estate::new();
    let (hv, host) = fakes();
    let open = |_: &str| -> Result<Box<dyn Hypervisor>> { Ok(Box::new(hv.clone())) };
    estate.up(&hv, &host, &mut no_hook).unwrap();
    // `up` left it up and is gone: handed over, the lab stays.
    rewrite_record(&estate, |rec| {
        assert_eq!(rec.owner, Owner::Up, "a plain up owns its run as up");
        rec.owner_start = rec.owner_start.wrapping_add(1);
    });
    let report = gc(&estate.state_dir(), false, Some("fake:///"), &host, &open).unwrap();
    assert!(report.removed_runs.is_empty(), "{report:?}");
    assert_eq!(hv.domain_names().len(), estate.plan.vms.len());
    // Once expired, it goes.
    rewrite_record(&estate, |rec| {
        rec.expires = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1)).to_string();
    });
    let report = gc(&estate.state_dir(), false, Some("fake:///"), &host, &open).unwrap();
    assert_eq!(report.removed_runs.len(), 1, "{report:?}");
    assert!(report.removed_runs[0].contains("expired"), "{report:?}");
    estate.assert_nothing_left(&hv, &host, "gc of an expired up lab");

    // The same lab owned by a `reclab run` that was killed (during verify: state up).
    let (hv, host) = fakes();
    let open = |_: &str| -> Result<Box<dyn Hypervisor>> { Ok(Box::new(hv.clone())) };
    let opts = UpOpts {
        owner: Owner::Run,
        ..UpOpts::default()
    };
    super::bring_up(
        &estate.plan,
        &hv,
        &host,
        &opts,
        Instant::now(),
        &mut no_hook,
        &mut None,
    )
    .unwrap();
    let rec = estate.dir().load_record().unwrap().unwrap();
    assert_eq!(
        (rec.owner, rec.state),
        (Owner::Run, crate::lab::record::RunState::Up)
    );
    // While its process lives, it is kept.
    let report = gc(&estate.state_dir(), false, Some("fake:///"), &host, &open).unwrap();
    assert!(report.removed_runs.is_empty(), "{report:?}");
    rewrite_record(&estate, |rec| {
        rec.owner_start = rec.owner_start.wrapping_add(1)
    });
    let report = gc(&estate.state_dir(), false, Some("fake:///"), &host, &open).unwrap();
    assert_eq!(report.removed_runs.len(), 1, "{report:?}");
    assert!(
        report.removed_runs[0].contains("(reclab run)"),
        "{report:?}"
    );
    estate.assert_nothing_left(&hv, &host, "gc after the drill died");
}

#[test]
fn a_run_record_without_an_owner_kind_loads_as_owned_by_up() {
    let estate = Estate::new();
    let (hv, host) = fakes();
    estate.up(&hv, &host, &mut no_hook).unwrap();
    let path = estate.dir().record_path();
    let mut json: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(json.as_object_mut().unwrap().remove("owner").is_some());
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let rec = estate.dir().load_record().unwrap().unwrap();
    assert_eq!(rec.owner, crate::lab::record::Owner::Up);
    teardown::teardown(Some(&hv), &host, &estate.dir()).unwrap();
}

/// What the fakes and the run directory hold.
fn snapshot(hv: &FakeHv, host: &FakeHost, dir: &RunDir) -> String {
    let mut files: Vec<String> = std::fs::read_dir(&dir.path)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?} {files:?}",
        hv.domain_names(),
        hv.network_names(),
        host.rules(),
        host.namespaces(),
        host.links(),
        host.daemons()
    )
}

#[test]
fn undoing_each_journaled_resource_twice_is_undoing_it_once() {
    let estate = Estate::new();
    let (hv, host) = fakes();
    estate.up(&hv, &host, &mut no_hook).unwrap();
    let dir = estate.dir();
    let resources = dir.resources().unwrap();
    let before = snapshot(&hv, &host, &dir);
    // Teardown's order: domains first, then the rest newest first.
    let (domains, rest): (Vec<&Resource>, Vec<&Resource>) = resources
        .iter()
        .partition(|r| matches!(r, Resource::Domain { .. }));
    for r in domains.into_iter().chain(rest.into_iter().rev()) {
        teardown::undo(Some(&hv), &host, r).unwrap();
        let once = snapshot(&hv, &host, &dir);
        teardown::undo(Some(&hv), &host, r).unwrap();
        assert_eq!(
            snapshot(&hv, &host, &dir),
            once,
            "undoing {} again",
            r.describe()
        );
    }
    assert_ne!(snapshot(&hv, &host, &dir), before);
    for _ in 0..2 {
        assert!(
            teardown::teardown(Some(&hv), &host, &dir)
                .unwrap()
                .is_empty()
        );
        estate.assert_nothing_left(&hv, &host, "after teardown");
    }
}

/// Creates `r` on the fakes (or on disk). Names every kind: a new kind of resource does not
/// compile until this test creates one.
fn create(r: &Resource, hv: &FakeHv, host: &FakeHost, scratch: &Path) {
    match r {
        Resource::Dir { path } => std::fs::create_dir_all(path.join("sub")).unwrap(),
        Resource::File { path } => std::fs::write(path, "x").unwrap(),
        Resource::Network { name } => hv
            .create_network(&crate::xml::network::isolated_network_xml(
                name,
                "rl0",
                "00000000-0000-4000-8000-000000000001",
            ))
            .unwrap(),
        Resource::Domain { name } => hv
            .create_domain(&format!("<domain><name>{name}</name></domain>"))
            .unwrap(),
        Resource::Netns { name } => host.netns_add(name).unwrap(),
        Resource::Link { name } => host
            .veth_add(name, "rl0", "reclab-ns", "ls0", "10.0.0.1/24")
            .unwrap(),
        Resource::Process { pidfile: _, netns } => {
            let conf = scratch.join("services.conf");
            std::fs::write(&conf, "").unwrap();
            host.start_dnsmasq(netns, &conf).unwrap()
        }
        Resource::Firewall {
            program,
            chain,
            rule,
        } => host.firewall_insert(program, chain, rule).unwrap(),
    }
}

/// Whether `r` exists on the fakes (or on disk).
fn exists(r: &Resource, hv: &FakeHv, host: &FakeHost) -> bool {
    match r {
        Resource::Dir { path } | Resource::File { path } => path.exists(),
        Resource::Network { name } => hv.network_names().contains(name),
        Resource::Domain { name } => hv.domain_names().contains(name),
        Resource::Netns { name } => host.namespaces().contains(name),
        Resource::Link { name } => host.links().contains_key(name),
        Resource::Process { netns, .. } => host.daemons().contains_key(netns),
        Resource::Firewall {
            program,
            chain,
            rule,
        } => host
            .rules()
            .contains(&(program.clone(), chain.clone(), rule.clone())),
    }
}

fn kind(r: &Resource) -> &'static str {
    match r {
        Resource::Dir { .. } => "dir",
        Resource::File { .. } => "file",
        Resource::Network { .. } => "network",
        Resource::Domain { .. } => "domain",
        Resource::Netns { .. } => "netns",
        Resource::Link { .. } => "link",
        Resource::Process { .. } => "process",
        Resource::Firewall { .. } => "firewall",
    }
}

#[test]
fn every_kind_of_resource_has_an_undo_that_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (hv, host) = fakes();
    // Creation order; undone newest first, as teardown does.
    let all = [
        Resource::Dir {
            path: tmp.path().join("d"),
        },
        Resource::File {
            path: tmp.path().join("f"),
        },
        Resource::Network {
            name: "reclab-0-lan".into(),
        },
        Resource::Netns {
            name: "reclab-ns".into(),
        },
        Resource::Link { name: "rv0".into() },
        Resource::Process {
            pidfile: tmp.path().join("services.pid"),
            netns: "reclab-ns".into(),
        },
        Resource::Firewall {
            program: "iptables".into(),
            chain: "INPUT".into(),
            rule: vec!["-i".into(), "rl0".into(), "-j".into(), "DROP".into()],
        },
        Resource::Domain {
            name: "reclab-erp-0-db".into(),
        },
    ];
    let kinds: std::collections::BTreeSet<&str> = all.iter().map(kind).collect();
    assert_eq!(
        kinds.len(),
        all.len(),
        "one resource of each kind: {kinds:?}"
    );
    for r in &all {
        create(r, &hv, &host, tmp.path());
        assert!(exists(r, &hv, &host), "{} was not created", r.describe());
    }
    for r in all.iter().rev() {
        teardown::undo(Some(&hv), &host, r).unwrap();
        assert!(!exists(r, &hv, &host), "undo left {}", r.describe());
    }
    assert!(host.is_clean());
}

#[test]
fn a_failed_up_says_how_far_it_got() {
    let estate = Estate::new();
    let (hv, host) = fakes();
    // The second domain to start (tier 2's web) fails.
    hv.fail_on("create_domain", 2);
    let mut partial = None;
    let err = bring_up(
        &estate.plan,
        &hv,
        &host,
        &UpOpts::default(),
        Instant::now(),
        &mut no_hook,
        &mut partial,
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("web"), "{err:#}");
    let partial = partial.expect("a partial report");
    assert_eq!(partial.failed_step.as_deref(), Some("boot tier 2"));
    // The restore point chosen for db, which tier 1 restored.
    assert_eq!(partial.injections.len(), 1);
    assert_eq!(partial.injections[0].vm, "db");
    let done: Vec<&str> = partial.timings_ms.iter().map(|(l, _)| l.as_str()).collect();
    assert!(done.contains(&"clone db/vda"), "{done:?}");
    assert!(
        done.iter().any(|l| l.starts_with("boot tier 1")),
        "{done:?}"
    );
    assert!(
        !done.iter().any(|l| l.starts_with("boot tier 2")),
        "{done:?}"
    );
    estate.assert_nothing_left(&hv, &host, "after the failed up");
}

#[test]
fn a_copy_of_production_tpm_state_is_made_under_the_lab_uuid_and_removed_at_teardown() {
    let estate = Estate::new();
    let (hv, host) = fakes();
    let copy = estate.plan.vms[0]
        .copies
        .iter()
        .find(|c| c.missing_ok)
        .expect("a copy of db's tpm state")
        .clone();
    let report = estate.up(&hv, &host, &mut no_hook).unwrap();
    assert_eq!(
        std::fs::read(Path::new(&copy.to).join("tpm2/tpm2-00.permall")).unwrap(),
        b"db tpm"
    );
    assert!(
        report.changes.iter().any(|c| c.contains(&format!(
            "tpm state {} to the private copy {}",
            copy.from, copy.to
        ))),
        "{:?}",
        report.changes
    );
    teardown::teardown(Some(&hv), &host, &estate.dir()).unwrap();
    estate.assert_nothing_left(&hv, &host, "after the teardown");
}

#[test]
fn without_production_tpm_state_the_lab_starts_with_an_empty_tpm_and_says_so() {
    let estate = Estate::new();
    let production = estate.tmp.path().join("swtpm").join(DB_UUID);
    let kept = estate.tmp.path().join("kept-tpm");
    std::fs::rename(&production, &kept).unwrap();
    let (hv, host) = fakes();
    let report = estate.up(&hv, &host, &mut no_hook).unwrap();
    let said: Vec<&String> = report
        .changes
        .iter()
        .filter(|c| c.contains("was not found"))
        .collect();
    assert_eq!(said.len(), 1, "{:?}", report.changes);
    assert!(
        said[0].starts_with(&format!(
            "db: production's tpm state {} was not found, so the lab's starts empty",
            production.display()
        )),
        "{}",
        said[0]
    );
    // The run record (what `status` shows) says it too.
    let record = estate.dir().load_record().unwrap().unwrap();
    assert!(record.changes.contains(said[0]), "{:?}", record.changes);
    teardown::teardown(Some(&hv), &host, &estate.dir()).unwrap();
    std::fs::rename(&kept, &production).unwrap();
    estate.assert_nothing_left(&hv, &host, "after the teardown");
}

#[test]
fn a_second_run_at_the_same_checkpoint_reuses_the_restore_cache_entry() {
    let estate = Estate::new();
    let (hv, host) = fakes();
    let first = estate.up(&hv, &host, &mut no_hook).unwrap();
    assert_eq!(first.restores.len(), 1);
    assert_eq!(first.restores[0].cache, "miss");
    teardown::teardown(Some(&hv), &host, &estate.dir()).unwrap();
    let entry = estate
        .state_dir()
        .join("restore-cache/0123456789abcdef0123456789abcdef");
    assert!(entry.join("vda").is_file(), "the entry outlives the run");

    let (hv, host) = fakes();
    let second = bring_up(
        &estate.plan,
        &hv,
        &host,
        &UpOpts::default(),
        Instant::now(),
        &mut no_hook,
        &mut None,
    )
    .unwrap();
    assert_eq!(second.restores[0].cache, "hit");
    assert!(
        !host.calls().iter().any(|c| c.starts_with("restore_backup")),
        "{:?}",
        host.calls()
    );
    let rec = estate.dir().load_record().unwrap().unwrap();
    assert_eq!(rec.restores[0].cache, "hit");
    // While the lab is up its lease keeps the entry even from an eviction to zero bytes.
    let evicted = crate::lab::restore_cache::evict_now(&estate.state_dir(), 0).unwrap();
    assert!(evicted.is_empty(), "{evicted:?}");
    assert!(entry.exists());
    teardown::teardown(Some(&hv), &host, &estate.dir()).unwrap();
    estate.assert_nothing_left(&hv, &host, "after the second run");
}
