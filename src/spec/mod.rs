//! The lab file: what an operator keeps in git to describe one restore lab.
//!
//! Reading happens in two stages. The TOML text is first decoded into private *wire* types that
//! mirror the file (`deny_unknown_fields`, every value carrying its position in the file); then
//! a validation pass turns them into the clean types below ([`LabSpec`], [`SegmentSpec`],
//! [`ServicesSpec`], [`VmSpec`], [`VmSource`]) that the rest of reclab uses. This module does no
//! IO except reading the lab file itself in [`load`] (and the system time zone database, to check
//! a dump source's `tz`): it never talks to libvirt and never looks at the files a lab refers to
//! (`reclab check` and `reclab points` do that later).
//!
//! Every problem is reported as `FILE:LINE:COLUMN: FIELD: WHAT IS WRONG; WHAT TO DO`, one per
//! line, sorted by position (for example
//! `lab.toml:12:8: vm[1].after[0]: unknown vm "dbb"; known vms: db, app`). Problems with the
//! file as a whole have no position (`lab.toml: name: missing lab name; ...`). Field paths
//! count array entries from 0, so `vm[1]` is the second `[[vm]]` table. Reporting happens in
//! rounds: TOML syntax errors first (all of them); then unknown keys and wrong value types (the
//! first one per top-level section, per segment and per VM); then, once the file decodes, every
//! validation problem at once.
//!
//! # Layout
//!
//! One concern per file, in the order a lab file goes through them:
//! - `wire`: serde types that mirror the file; `decode`: TOML text to wire types;
//! - `validate/`: wire types to the model, one file per table (`segments`, `vm`, `source`,
//!   `dhcp`, `dumps`, `tiers`, `checks`, `notify`) plus the shared field helpers in `fields`;
//! - `problems`: [`Problem`], [`SpecError`] and the collector every step reports to;
//! - [`model`]: the validated types, pure data that imports nothing of reclab but `base`.
//!
//! The reference below is a copy of README.md's "The lab file" section, and the check
//! reference in `model/check.rs` one of its "Check kinds"; unit tests keep each copy equal to
//! the README (headings one level up), so edit both together.
//!
//! # Lab file reference
//!
//! A complete example lives in `examples/erp.toml`.
//!
//! ```toml
//! name = "erp"
//! connect = "qemu:///system"
//! ttl = "8h"
//! accel = "kvm"
//!
//! [segment.lan]
//! production = ["prod"]
//! hosts = { "db.prod.example" = "10.20.0.10", "app.prod.example" = "10.20.0.11" }
//!
//! [segment.lan.services]
//! address = "10.20.0.1/24"
//! dns = true
//! dhcp = true
//! domain = "prod.example"
//!
//! [[vm]]
//! name = "db"
//! from = { domain = "prod-db", snapshot = "nightly" }
//! ready = { timeout = "5m", tcp = 5432 }
//! dhcp = { ip = "10.20.0.10" }
//!
//! [[vm]]
//! name = "app"
//! from = { xml = "backups/app.xml", disks = { vda = "backups/app.qcow2" } }
//! after = ["db"]
//! ```
//!
//! ## Top level
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `name` | required | Lab name: 1 to 20 characters, a lowercase letter first, then lowercase letters, digits or `-`. It is part of every libvirt domain, network and volume name reclab derives, which is why it is short. |
//! | `connect` | `"qemu:///system"` | libvirt connection URI (any URI or URI alias libvirt accepts, such as `qemu+ssh://root@hv1/system`). The `RECLAB_CONNECT` environment variable overrides it at run time. |
//! | `ttl` | `"8h"` | How long the lab may live. After that `reclab gc` removes it. A duration (see below). |
//! | `accel` | `"kvm"` | `"kvm"` for hardware virtualization, `"tcg"` for QEMU's software emulation (slow, but works where KVM is unavailable, for example inside another VM). |
//! | `state_dir` | the `--state-dir` option | Directory for run state (journals, overlays, logs). Relative paths are relative to the lab file's directory. |
//! | `tpm_state_dir` | `"/var/lib/libvirt/swtpm"` | Where the hypervisor's libvirt keeps software TPM state, one `<uuid>` directory per domain (the default is `qemu:///system`'s), as reclab sees it. A lab VM whose TPM has no `<source>` gets a private copy of production's state from here (relative paths are relative to the lab file's directory). |
//! | `max_skew` | none (unbounded) | Largest time allowed between the VM image and the dump chosen for a VM, either way (a duration, e.g. `"26h"`). A larger skew makes `--at` fail, listing the nearest points. |
//! | `[segment.NAME]` | none | Isolated lab networks, see below. |
//! | `[[vm]]` | at least one | The VMs to clone, see below. |
//! | `[notify]` | none | E-mail, webhook and MQTT notifications after every drill (see `spec::model::notify`). |
//! | `[metrics]` | none | `textfile = "…/reclab.prom"`: a Prometheus textfile updated after every drill. |
//!
//! ## `[segment.NAME]`: isolated segments
//!
//! One isolated segment per production layer-2 segment. Each becomes a libvirt network with no
//! `<forward>` and no host address: guests keep their production IPs, MACs and static
//! configuration and reach nothing outside the lab. `NAME` is 1 to 8 characters, a lowercase
//! letter first, then lowercase letters or digits: it goes into the lab bridge's name, and Linux
//! limits interface names to 15 characters.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `production` | all interfaces, if this is the only segment | Production libvirt network names, bridge names and/or host interface names (the `dev` of a macvtap `direct` interface). A cloned VM's interface that is attached to one of them lands in this segment. Required when there is more than one segment; a name may appear in only one segment. |
//! | `hosts` | `{}` | Host names for the lab DNS: `{ "db.prod.example" = "10.20.0.10" }`. Several names may share an address. When the segment has services, every address must be inside the services subnet. |
//! | `[segment.NAME.services]` | none | Optional lab services, see below. |
//!
//! A VM interface whose production network matches no segment is an error when the lab is
//! planned; with no segment at all, VMs must not have network interfaces.
//!
//! ## `[segment.NAME.services]`: lab DNS and DHCP
//!
//! Lab services answer at a production address (typically the production gateway or DNS
//! server) from inside the lab, without giving the hypervisor an address on the segment and
//! without forwarding any query outside the lab.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `address` | required | The address the services answer at, in CIDR form (`"10.20.0.1/24"`). It must be a host address of its subnet (not the network or broadcast address); the prefix is 1 to 30. |
//! | `dns` | `true` | Answer DNS for the segment's `hosts`. Unknown names get no answer; nothing is forwarded. |
//! | `dhcp` | `false` | Answer DHCP with the reservations of the VMs on this segment (each VM's `dhcp`). |
//! | `dhcp_range` | none | `["10.20.0.100", "10.20.0.199"]`: also lease addresses from this range to unknown MACs. Needs `dhcp = true`; both ends inside the subnet. |
//! | `domain` | none | Search domain handed out by DHCP and treated as local by DNS. |
//!
//! At least one of `dns` and `dhcp` must be enabled.
//!
//! ## `[[vm]]`: VMs
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `name` | required | 1 to 16 characters, a lowercase letter first, then lowercase letters, digits or `-`; unique in the lab. Part of the lab domain's name, which is why it is short. |
//! | `from` | required | Where the VM comes from, one of two forms (below). |
//! | `tier` | derived | Boot tier, 1 to 999. VMs of a tier start together; tier N+1 starts when tier N is ready. |
//! | `after` | `[]` | Names of VMs that must be ready before this one starts. |
//! | `ready` | `{ timeout = "5m" }` | When the VM counts as ready, below. |
//! | `memory` | production's | The lab VM's memory, e.g. `"2GiB"` or `"512MiB"` (KiB, MiB, GiB, TiB; 16MiB to 16TiB): lab hosts are smaller than production. A `reclab listen` fleet admits a lab by the sum of its VMs' `memory` (docs/fleet.md). Refused for a domain with NUMA cells or `<maxMemory>`. |
//! | `vcpus` | production's | The lab VM's virtual CPUs (1 to 512); the CPU topology becomes that many sockets of one core. |
//! | `dhcp` | none | A DHCP reservation answered by the lab services, below. |
//! | `dumps` | none | Database dumps to restore into the VM, see below. |
//!
//! **`from`**, one of:
//! - `{ domain = "prod-db", snapshot = "nightly" }`: a libvirt domain on the `connect` host and
//!   one of its external disk-only snapshots; the lab clones the snapshot's frozen backing files,
//!   so production keeps running. Both keys are required. The snapshot may be a pattern with `*`
//!   (`snapshot = "nightly-*"`): every matching snapshot is then an image restore point and
//!   `--at` picks the newest one at or before the moment (`latest`: the newest).
//! - `{ xml = "backups/db.xml", disks = { vda = "backups/db.qcow2" } }`: a domain XML file and
//!   one image per disk target (qcow2 or raw), as a backup tool restores them. Paths are relative
//!   to the lab file's directory; `disks` needs at least one entry. The image's restore-point time
//!   is the newest disk file's modification time, unless `taken = "2026-11-30T22:00:00+01:00"`
//!   (RFC 3339 with its offset) says when the images were taken. Runtime state in the XML (a
//!   live `virsh dumpxml`: `id=`, `<alias>`, VNC/SPICE ports, pty paths, generated socket paths,
//!   tap names, `<backingStore>` chains, dynamic security labels) is removed before the rewrite.
//! - `{ virtnbdbackup = "backups/vm/db", zone = "Europe/Zurich" }`: a directory holding one
//!   checkpoint chain written by virtnbdbackup (`-l full`, then `-l inc`). Every checkpoint is a
//!   restore point, dated by its data files' stream headers, which are in the backup host's local
//!   time: `zone` (an IANA name, default the system's zone) says which. The chain is checked
//!   before anything is created (a full backup first, each incremental's parent the checkpoint
//!   before it, `<domain>.cpt`, `checkpoints/*.xml` and the data files agreeing, every disk at
//!   every checkpoint); `*.partial` files of a running backup are ignored with a warning; `-l copy`
//!   and `-l diff` backups are refused; lz4-compressed chains (`virtnbdbackup -z`) are restored by virtnbdrestore (tested end to end).
//!   The chosen checkpoint is restored with `virtnbdrestore` into the restore cache under the
//!   state directory (`restore-cache/`, bounded by `RECLAB_RESTORE_CACHE_MAX`, e.g. `20G`,
//!   default 50 GiB, least recently used entries evicted, never one a running lab sits on); a
//!   later drill at the same checkpoint reuses it. The backup directory is only read. The domain
//!   XML is that checkpoint's `vmconfig.<checkpoint>.xml`, cleaned of runtime state as above; a
//!   UEFI nvram, kernel or initrd comes from the copy virtnbdbackup saved next to it
//!   (`<file>.<checkpoint>`), copied into the run directory (without a copy the lab is refused).
//!
//! **Boot tiers.** A VM's tier is the larger of its `tier` (default 1) and one more than the tier
//! of every VM in its `after` list. A VM that gives both `tier` and `after` must have a tier above
//! each of those VMs. Cycles in `after` are rejected. Empty tiers are skipped, so tiers 1 and 5
//! boot as two consecutive groups.
//!
//! **`ready`**: `{ timeout = "5m", tcp = 80 }`. A VM is ready when its QEMU guest agent answers
//! a ping and, if `tcp` is given (1 to 65535), when that TCP port accepts connections from
//! inside the lab. `timeout` bounds the whole wait (default `"5m"`).
//!
//! **`dhcp`**: `{ ip = "10.20.0.10", mac = "52:54:00:20:00:10", segment = "lan" }`. The lab
//! services of the segment whose subnet contains `ip` hand out `ip` to `mac`. `mac` defaults to
//! the MAC of the VM's interface on that segment, read from the production domain XML when the
//! lab is planned. `segment` is only needed when several DHCP segments contain `ip`. The segment
//! needs `dhcp = true`; within a segment, MACs and IPs are unique, and no reservation may use the
//! services address. The DHCP host name is the segment's `hosts` name for `ip` (if there are
//! several: the one whose first label is the VM name, else the alphabetically first), or else
//! the VM name.
//!
//! ## `[vm.dumps]`: restore points from database dumps
//!
//! ```toml
//! [vm.dumps]
//! dir = "backups/dumps"
//! pattern = "erp-%Y%m%d-%H%M.sql"
//! manifest = "{file}.manifest.json"
//! restore = ["sqlite3 /var/lib/erp/erp.db < {dump}", "sqlite3 {as} < {dump}"]
//! restore_as = "/var/lib/erp/restored.db"
//! ```
//!
//! Written as a `[vm.dumps]` table right after its `[[vm]]`, or inline as `dumps = { ... }`.
//! Every file in `dir` whose whole name matches `pattern` is a restore point; `reclab points`
//! lists them and `--at` picks the newest one at or before the moment asked for. The chosen
//! dump (with its manifest and a `SHA256SUMS`) reaches the guest on a read-only data disk
//! attached through the hypervisor, never over a network.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `dir` | required | The dump directory, relative to the lab file's directory. |
//! | `pattern` | required | Which file names are dumps, and where their time is: strftime-like fields `%Y %m %d %j %H %M %S %s %z`, `*` for any run of characters, `%%` for `%` (see `points`). With the default `time`, it needs a full date (`%Y%m%d`, `%Y%j`) or `%s`. |
//! | `time` | `"name"` | `"name"`: the time comes from the name via the pattern. `"mtime"`: the file's modification time (then the pattern has no time fields). |
//! | `tz` | `"UTC"` | IANA time zone of the wall-clock times in names, such as `"Europe/Berlin"`; times a DST change makes ambiguous take the first occurrence, skipped times move forward. Not with `%s`, `%z` or `time = "mtime"`. |
//! | `manifest` | none | The manifest next to each dump, as a name template with `{file}` (the dump's file name): `"{file}.manifest.json"`. JSON with at least `sha256`; `bytes` and `file` are checked if present, everything else (row counts ...) is kept for the checks and the report. |
//! | `sha256sums` | none | A `sha256sum`-style file in `dir` listing the dumps, such as `"SHA256SUMS"`. With `manifest` too, both must agree with the dump. |
//! | `restore` | `[]` | Shell commands run in the guest (`/bin/sh -c`, through the guest agent) after the dump was verified there, in order; the first failure stops the restore. Placeholders: `{dump}` the dump's path in the guest, `{dir}` the mount point, `{file}` the dump's file name, `{manifest}` the manifest's path in the guest (needs `manifest`), `{as}` the value of `restore_as`. Values are shell-quoted where needed; `{{` and `}}` are literal braces. |
//! | `restore_as` | none | A second database name or path, for restoring the dump next to the database that came with the VM image so that checks can compare the two. Commands refer to it as `{as}`, and at least one must. |
//! | `format` | `"ext4"` | The data disk's file system: `"ext4"` (built without root mounts: `mke2fs` and `debugfs` lay out the files, the bytes are copied straight in at the speed of `cp`) or `"iso"` (ISO 9660 with Rock Ridge and Joliet, built with `xorriso`, for guests without ext4). |
//! | `mount` | `"/mnt/reclab"` | Where the guest mounts the data disk (read-only). |
//! | `attach` | `"boot"` | When the data disk is attached: `"boot"` (in the lab domain from the start) or `"hotplug"` (plugged in once the guest agent answers, so the guest boots with exactly production's disks). |
//! | `timeout` | `"5m"` | Bound for each restore command. |
//!
//! ## Durations
//!
//! `ttl`, `max_skew`, `ready.timeout` and `dumps.timeout` are positive durations in jiff's friendly format: `"90s"`, `"5m"`,
//! `"8h"`, `"1h30m"`, `"1 hour 30 minutes"` (ISO 8601 `"PT5M"` also works). Units above hours
//! are refused; write a week as `"168h"`.

use std::path::Path;

mod decode;
pub mod model;
mod problems;
mod validate;
mod wire;

pub use model::{
    Accel, CheckKind, CheckSpec, CompareSide, DEFAULT_CHECK_TIMEOUT, DEFAULT_CONNECT,
    DEFAULT_MOUNT, DEFAULT_READY_TIMEOUT, DEFAULT_RESTORE_TIMEOUT, DEFAULT_TTL, DhcpReservation,
    DiskAttach, DiskFormat, DumpTime, DumpsSpec, EmailSpec, Ipv4Cidr, JsonExpectation, LabSpec,
    MAX_CHECK_NAME, MAX_LAB_NAME, MAX_SEGMENT_NAME, MAX_TIER, MAX_VM_NAME, MacAddr, MacAddrError,
    MetricsSpec, MqttSpec, NotifySpec, PublishKind, PublishSpec, ReadySpec, SegmentSpec,
    ServicesSpec, VmSource, VmSpec, WebhookSpec,
};
pub use problems::{Problem, SpecError};
pub use validate::notify::{UrlError, mqtt_url, topic_problem};
/// A size like `2GiB` in bytes (the lab file's `memory` syntax).
pub use validate::parse_memory as parse_size;

use problems::Problems;

/// Reads and validates a lab file.
pub fn load(path: &Path) -> Result<LabSpec, SpecError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(err) => Err(SpecError {
            problems: vec![Problem {
                file: path.to_path_buf(),
                location: None,
                field: String::new(),
                message: if err.kind() == std::io::ErrorKind::InvalidData {
                    "the lab file is not UTF-8 text; save it as UTF-8".to_string()
                } else {
                    format!("cannot read the lab file: {err}; check the path and its permissions")
                },
            }],
        }),
    }
}

/// Validates lab file text; `path` names the file in messages and anchors relative paths.
pub fn parse(text: &str, path: &Path) -> Result<LabSpec, SpecError> {
    parse_with_work(text, path).0
}

/// [`parse`], and the work done placing its problems (see `Problems`).
fn parse_with_work(text: &str, path: &Path) -> (Result<LabSpec, SpecError>, usize) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut problems = Problems::new(path, text);
    let lab = decode::decode(text, &mut problems)
        .and_then(|wire| validate::validate(wire, path, &mut problems));
    let work = problems.work();
    match lab {
        Some(lab) if problems.is_empty() => (Ok(lab), work),
        _ => (Err(problems.finish()), work),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::time::Duration;

    use super::problems::line_column;
    use super::*;

    /// A lab with the given `[[vm]]` tables, all cloned from domain snapshots.
    fn lab(vms: &str) -> Result<LabSpec, SpecError> {
        parse(&format!("name = \"t\"\n{vms}"), Path::new("t.toml"))
    }

    fn vm(name: &str, extra: &str) -> String {
        format!(
            "[[vm]]\nname = \"{name}\"\nfrom = {{ domain = \"p-{name}\", snapshot = \"s\" }}\n{extra}\n"
        )
    }

    fn tiers(vms: &[String]) -> Vec<Vec<String>> {
        lab(&vms.concat())
            .unwrap_or_else(|err| panic!("lab should be valid:\n{err}"))
            .boot_tiers()
    }

    fn names(groups: &[&[&str]]) -> Vec<Vec<String>> {
        groups
            .iter()
            .map(|g| g.iter().map(|n| n.to_string()).collect())
            .collect()
    }

    /// The lines of README.md's section under `heading`, without the heading itself, up to the
    /// next heading of the same or a higher level.
    fn readme_section(heading: &str) -> Vec<String> {
        let level = heading.chars().take_while(|c| *c == '#').count();
        let mut lines = include_str!("../../README.md")
            .lines()
            .skip_while(|line| *line != heading);
        assert!(lines.next().is_some(), "README.md has no {heading:?}");
        let mut fenced = false;
        let section: Vec<String> = lines
            .take_while(|line| {
                fenced ^= line.starts_with("```");
                fenced || line.starts_with("```") || !is_heading_of_at_most(line, level)
            })
            .map(str::to_string)
            .collect();
        normalized(section, level)
    }

    /// The module doc lines of `source` after `heading`, to the end of the doc.
    fn doc_section(source: &str, heading: &str) -> Vec<String> {
        let level = heading.chars().take_while(|c| *c == '#').count();
        let mut lines = source
            .lines()
            .take_while(|line| line.starts_with("//!"))
            .map(|line| {
                let line = line.trim_start_matches("//!");
                line.strip_prefix(' ').unwrap_or(line).to_string()
            })
            .skip_while(|line| line != heading);
        assert!(lines.next().is_some(), "the module doc has no {heading:?}");
        normalized(lines.collect(), level)
    }

    fn is_heading_of_at_most(line: &str, level: usize) -> bool {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        (1..=level).contains(&hashes) && line[hashes..].starts_with(' ')
    }

    /// Headings outside code blocks made relative to `level`; trailing blank lines dropped.
    fn normalized(mut lines: Vec<String>, level: usize) -> Vec<String> {
        let mut fenced = false;
        for line in &mut lines {
            if line.starts_with("```") {
                fenced = !fenced;
            } else if !fenced && line.starts_with('#') {
                let hashes = line.chars().take_while(|c| *c == '#').count();
                *line = format!(
                    "{}{}",
                    "+".repeat(hashes.saturating_sub(level)),
                    &line[hashes..]
                );
            }
        }
        while lines.last().is_some_and(|line| line.trim().is_empty()) {
            lines.pop();
        }
        lines
    }

    #[test]
    fn the_lab_file_reference_is_the_readmes() {
        let doc = doc_section(include_str!("mod.rs"), "# Lab file reference");
        assert!(
            doc.len() > 100,
            "the reference shrank to {} lines",
            doc.len()
        );
        assert_eq!(doc, readme_section("## The lab file"));
    }

    #[test]
    fn the_check_reference_is_the_readmes() {
        let doc = doc_section(include_str!("model/check.rs"), "# Check kinds");
        assert!(
            doc.len() > 100,
            "the reference shrank to {} lines",
            doc.len()
        );
        assert_eq!(doc, readme_section("### Check kinds"));
    }

    #[test]
    fn the_model_is_pure_and_imports_only_base() {
        for (file, text) in [
            ("model/mod.rs", include_str!("model/mod.rs")),
            ("model/check.rs", include_str!("model/check.rs")),
            ("model/notify.rs", include_str!("model/notify.rs")),
        ] {
            let code = text.split("#[cfg(test)]").next().unwrap_or(text);
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                let line = line.replace("pub(in crate::spec)", "");
                assert!(
                    !line.contains("crate::") || line.trim_start().starts_with("use crate::base::"),
                    "spec/{file} may import only crate::base, found {line:?}"
                );
            }
            for forbidden in [
                "std::fs",
                "std::io",
                "std::process",
                "std::net::TcpStream",
                "File::",
                "::now()",
                "toml::",
            ] {
                assert!(
                    !code.contains(forbidden),
                    "spec/{file} must do no IO or parsing, found {forbidden}"
                );
            }
        }
    }

    #[test]
    fn the_example_in_the_reference_is_a_valid_lab() {
        let example: String = include_str!("mod.rs")
            .lines()
            .skip_while(|line| *line != "//! ```toml")
            .skip(1)
            .take_while(|line| *line != "//! ```")
            .map(|line| format!("{}\n", line.trim_start_matches("//!").trim_start()))
            .collect();
        let spec =
            parse(&example, Path::new("docs/lab.toml")).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(spec.boot_tiers(), names(&[&["db"], &["app"]]));
        assert!(
            matches!(&spec.vms[1].source, VmSource::Files { xml, .. } if *xml == std::path::absolute("docs/backups/app.xml").unwrap())
        );
    }

    #[test]
    fn without_tier_or_after_every_vm_boots_in_tier_one() {
        assert_eq!(
            tiers(&[vm("a", ""), vm("b", ""), vm("c", "")]),
            names(&[&["a", "b", "c"]])
        );
    }

    #[test]
    fn after_chains_become_consecutive_tiers_whatever_the_file_order() {
        assert_eq!(
            tiers(&[
                vm("client", "after = [\"app\"]"),
                vm("app", "after = [\"db\"]"),
                vm("db", ""),
            ]),
            names(&[&["db"], &["app"], &["client"]])
        );
    }

    #[test]
    fn a_diamond_boots_the_join_after_its_deepest_dependency() {
        let spec = lab(&[
            vm("db", ""),
            vm("cache", ""),
            vm("queue", "after = [\"db\"]"),
            vm("app", "after = [\"queue\", \"cache\"]"),
        ]
        .concat())
        .unwrap();
        assert_eq!(
            spec.boot_tiers(),
            names(&[&["db", "cache"], &["queue"], &["app"]])
        );
        assert_eq!(spec.vm("app").unwrap().tier, 3);
        assert_eq!(spec.vm("app").unwrap().after, ["queue", "cache"]);
    }

    #[test]
    fn explicit_tiers_are_kept_and_gaps_do_not_make_empty_groups() {
        let spec = lab(&[
            vm("db", "tier = 1"),
            vm("report", "tier = 5"),
            vm("app", "after = [\"db\"]"),
        ]
        .concat())
        .unwrap();
        assert_eq!(spec.vm("report").unwrap().tier, 5);
        assert_eq!(spec.boot_tiers(), names(&[&["db"], &["app"], &["report"]]));
    }

    #[test]
    fn an_explicit_tier_above_the_derived_one_is_honored() {
        assert_eq!(
            tiers(&[
                vm("db", ""),
                vm("app", "tier = 3\nafter = [\"db\"]"),
                vm("web", "tier = 2"),
            ]),
            names(&[&["db"], &["web"], &["app"]])
        );
    }

    #[test]
    fn a_vm_after_another_is_pushed_above_that_vms_explicit_tier() {
        assert_eq!(
            tiers(&[vm("db", "tier = 4"), vm("app", "after = [\"db\"]")]),
            names(&[&["db"], &["app"]])
        );
        let spec = lab(&[vm("db", "tier = 4"), vm("app", "after = [\"db\"]")].concat()).unwrap();
        assert_eq!(spec.vm("app").unwrap().tier, 5);
    }

    #[test]
    fn an_explicit_tier_at_or_below_a_dependency_is_a_conflict() {
        let err = lab(&[
            vm("db", ""),
            vm("app", "after = [\"db\"]"),
            vm("web", "tier = 2\nafter = [\"app\"]"),
        ]
        .concat())
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.toml:13:8: vm[2].tier: tier 2 does not come after \"app\", which boots in tier 2; raise the tier above 2 or drop it to derive it from after"
        );
    }

    #[test]
    fn every_cycle_is_named_once() {
        let err = lab(&[
            vm("a", "after = [\"b\"]"),
            vm("b", "after = [\"a\"]"),
            vm("c", "after = [\"d\"]"),
            vm("d", "after = [\"c\"]"),
        ]
        .concat())
        .unwrap_err();
        let messages: Vec<&str> = err.problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(messages.len(), 2, "{err}");
        assert!(messages[0].starts_with("after cycle a -> b -> a "), "{err}");
        assert!(messages[1].starts_with("after cycle c -> d -> c "), "{err}");
    }

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let spec = lab(&vm("db", "")).unwrap();
        assert_eq!(spec.connect, "qemu:///system");
        assert_eq!(spec.ttl, Duration::from_secs(8 * 3600));
        assert_eq!(spec.accel, Accel::Kvm);
        assert_eq!(spec.state_dir, None);
        assert!(spec.segments.is_empty());
        let db = spec.vm("db").unwrap();
        assert_eq!(db.tier, 1);
        assert_eq!(
            db.ready,
            ReadySpec {
                timeout: Duration::from_secs(300),
                tcp: None
            }
        );
        assert_eq!(db.dhcp, None);
    }

    #[test]
    fn problems_carry_file_line_column_and_field() {
        let err = parse(
            "name = \"x\"\n\n[[vm]]\nname = \"db\"\nfrom = { domain = \"d\", snapshot = \"s\" }\nafter = [\"dbb\"]\n",
            Path::new("labs/x.toml"),
        )
        .unwrap_err();
        assert_eq!(
            err.problems,
            [Problem {
                file: PathBuf::from("labs/x.toml"),
                location: Some((6, 10)),
                field: "vm[0].after[0]".into(),
                message: "unknown vm \"dbb\" (did you mean \"db\"?); known vms: db".into(),
            }]
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let text = "# é\nname = \"Überlab\"\n";
        assert_eq!(line_column(text, text.find("\"Ü").unwrap()), (2, 8));
        let err = parse(text, Path::new("l.toml")).unwrap_err();
        assert!(err.to_string().starts_with("l.toml:2:8: name: "), "{err}");
    }

    #[test]
    fn relative_paths_join_the_lab_files_directory_made_absolute() {
        let text = "name = \"x\"\nstate_dir = \"state\"\n[[vm]]\nname = \"db\"\nfrom = { xml = \"b/db.xml\", disks = { vda = \"b/db.qcow2\", vdb = \"/srv/data.raw\" } }\n";
        let spec = parse(text, Path::new("/nowhere/labs/x.toml")).unwrap();
        assert_eq!(spec.state_dir, Some(PathBuf::from("/nowhere/labs/state")));
        assert_eq!(
            spec.vms[0].source,
            VmSource::Files {
                xml: PathBuf::from("/nowhere/labs/b/db.xml"),
                disks: BTreeMap::from([
                    ("vda".to_string(), PathBuf::from("/nowhere/labs/b/db.qcow2")),
                    ("vdb".to_string(), PathBuf::from("/srv/data.raw")),
                ]),
                taken: None,
            }
        );
        // A lab file named relative to the working directory: its directory, absolutely.
        let cwd = std::fs::canonicalize(".").unwrap();
        let bare = parse(text, Path::new("x.toml")).unwrap();
        assert_eq!(bare.state_dir, Some(cwd.join("state")));
        // The lab file's own path too: a run records it for `reclab verify`.
        assert_eq!(bare.path, cwd.join("x.toml"));
        assert_eq!(spec.path, PathBuf::from("/nowhere/labs/x.toml"));
        let nested = parse(text, Path::new("src/../src/x.toml")).unwrap();
        assert_eq!(nested.state_dir, Some(cwd.join("src/state")));
    }

    /// `lines` lines of garbage, each a syntax error or two.
    fn garbage(lines: usize) -> String {
        let words = [
            "foo", "= bar", "[x", "\"q", "===", "a.b", "{", "}", "1e", "@@", "é",
        ];
        (0..lines)
            .map(|i| {
                (0..5)
                    .map(|j| words[(i * 7 + j * 3 + i / 5) % words.len()])
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn placing_problems_is_linear_in_the_text_and_only_the_first_are_shown() {
        let (small, small_work) = parse_with_work(&garbage(2_000), Path::new("g.toml"));
        let (large, large_work) = parse_with_work(&garbage(20_000), Path::new("g.toml"));
        let (small, large) = (small.unwrap_err(), large.unwrap_err());
        // Problems grow with the text...
        assert!(small.problems.len() > 1_000, "{}", small.problems.len());
        assert!(large.problems.len() > 9 * small.problems.len());
        // ...and so does the work of placing them, no faster (rescanning the text for every
        // problem would make it 100 times more).
        assert!(
            large_work < 12 * small_work,
            "work {small_work} for 2000 lines, {large_work} for 20000"
        );
        // Every problem keeps its place; the ones shown are the first, then a count.
        let last = large.problems.last().unwrap();
        assert_eq!(last.location.map(|(line, _)| line), Some(20_000), "{last}");
        let shown = large.to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), problems::SHOWN + 1, "{shown}");
        assert!(lines[0].starts_with("g.toml:1:"), "{shown}");
        assert_eq!(
            lines[problems::SHOWN],
            format!(
                "… and {} more problems (is this a reclab lab file?)",
                large.problems.len() - problems::SHOWN
            )
        );
    }
}
