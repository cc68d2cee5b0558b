//! The host side effects of a lab, beside [`crate::hv::Hypervisor`]: everything `up`, teardown
//! and `gc` do to the hypervisor host that is not a libvirt call. [`SysHost`] is the real host
//! (qemu-img, ip, iptables, dnsmasq, /sys and /proc); `lab::fake::FakeHost` records the same
//! operations in memory for the unit tests of the executor and of teardown.
//!
//! Each operation that creates something has one that removes it, and removing something
//! already gone succeeds, so that replaying a journal stays idempotent.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

use crate::base::sys;
use crate::lab::resolved::Layer;
use crate::restore::record::PlannedInjection;

/// The host operations of a lab. See the module documentation.
pub trait Host: Send + Sync {
    /// Create a thin qcow2 overlay over `backing` (never opening it).
    fn create_overlay(&self, overlay: &Path, backing: &Layer) -> Result<()>;
    /// Copy a file (a production nvram into the run directory).
    fn copy_file(&self, from: &Path, to: &Path) -> Result<()>;
    /// Copy a directory and everything in it to `to` (which must not exist); the source is
    /// only read.
    fn copy_tree(&self, from: &Path, to: &Path) -> Result<()>;
    /// Build the data disk of a planned injection at `image`; fills the injection's record.
    fn build_data_disk(&self, p: &mut PlannedInjection, image: &Path) -> Result<()>;
    /// Restore one disk of a virtnbdbackup chain with `virtnbdrestore -U uri -i input -o
    /// output --sequence files` into `output/disk` (the backup is only read).
    fn restore_backup(
        &self,
        uri: &str,
        input: &Path,
        output: &Path,
        disk: &str,
        files: &[String],
    ) -> Result<()>;

    /// Whether a network interface exists in reclab's namespace (`/sys/class/net/NAME`).
    fn link_exists(&self, name: &str) -> Result<bool>;
    /// The interfaces enslaved to a bridge (`/sys/class/net/BRIDGE/brif`).
    fn bridge_members(&self, bridge: &str) -> Result<Vec<String>>;
    /// No IPv6 and no ARP answers for the host's addresses on a lab bridge.
    fn quiet_bridge(&self, bridge: &str) -> Result<()>;
    /// The IPv4 addresses of reclab's namespace, loopback excluded.
    fn host_addresses(&self) -> Result<Vec<String>>;
    /// The IPv6 link-local address of a link of reclab's namespace (`/proc/net/if_inet6`),
    /// if it has one.
    fn link_local_address(&self, link: &str) -> Result<Option<String>>;

    /// Insert a rule at the top of `chain` (table `filter`) with `program` (iptables, ip6tables).
    fn firewall_insert(&self, program: &str, chain: &str, rule: &[String]) -> Result<()>;
    /// Whether the rule is in `chain`.
    fn firewall_present(&self, program: &str, chain: &str, rule: &[String]) -> Result<bool>;
    /// Delete one copy of the rule from `chain`.
    fn firewall_delete(&self, program: &str, chain: &str, rule: &[String]) -> Result<()>;
    /// Every rule, as `iptables -S` prints them.
    fn firewall_rules(&self, program: &str) -> Result<String>;

    /// Create a network namespace with its loopback up.
    fn netns_add(&self, name: &str) -> Result<()>;
    /// Delete a network namespace reclab created, ending the processes still inside it first;
    /// an absent one is fine.
    fn netns_remove(&self, name: &str) -> Result<()>;
    /// The named network namespaces (`/run/netns`), of every reclab on the host.
    fn netns_list(&self) -> Result<Vec<String>>;
    /// A veth pair: `link` in reclab's namespace, enslaved to `bridge` and up, its peer `inner`
    /// in `netns` with address `cidr`, up.
    fn veth_add(
        &self,
        link: &str,
        bridge: &str,
        netns: &str,
        inner: &str,
        cidr: &str,
    ) -> Result<()>;
    /// Delete a link of reclab's namespace; an absent one is fine.
    fn link_remove(&self, name: &str) -> Result<()>;
    /// Start dnsmasq inside `netns` with the configuration file `conf` (it daemonizes and
    /// writes the pidfile the configuration names).
    fn start_dnsmasq(&self, netns: &str, conf: &Path) -> Result<()>;
    /// Stop the daemon whose PID is in `pidfile`, only if it is still reclab's (inside `netns`
    /// or started from the pidfile's directory); a missing pidfile or process is fine.
    fn stop_process(&self, pidfile: &Path, netns: &str) -> Result<()>;

    /// The PID of a QEMU process on this host that runs the domain `domain` (QEMU is started
    /// with `-name guest=DOMAIN,…`), if any: whether a domain is dead when its daemon cannot
    /// be asked.
    fn vm_process(&self, domain: &str) -> Result<Option<u32>>;

    /// Record on this host that the resources tagged with run `run8` belong to the run
    /// directory `dir`, for every reclab whatever its state directory (a symbolic link
    /// `/run/reclab/owners/RUN8` → `dir`): `gc` with another state directory leaves them alone.
    fn owner_register(&self, run8: &str, dir: &Path) -> Result<()>;
    /// The run directory registered for run `run8`, if any (it may be gone: a lost run).
    fn owner_of(&self, run8: &str) -> Result<Option<PathBuf>>;
    /// Remove run `run8`'s registration if it names `dir`; absent is fine.
    fn owner_remove(&self, run8: &str, dir: &Path) -> Result<()>;
}

/// Where [`SysHost`] registers which run directory owns a run's resources: on a tmpfs, so a
/// reboot, which ends every (transient) lab, clears it too.
pub const OWNERS_DIR: &str = "/run/reclab/owners";

/// The real host.
#[derive(Debug, Clone, Copy, Default)]
pub struct SysHost;

impl Host for SysHost {
    fn create_overlay(&self, overlay: &Path, backing: &Layer) -> Result<()> {
        crate::lab::image::create_overlay(overlay, backing)
    }

    fn copy_file(&self, from: &Path, to: &Path) -> Result<()> {
        std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
        Ok(())
    }

    fn copy_tree(&self, from: &Path, to: &Path) -> Result<()> {
        crate::base::fs::copy_tree(from, to)
    }

    fn build_data_disk(&self, p: &mut PlannedInjection, image: &Path) -> Result<()> {
        crate::restore::inject::build_disk(p, image)
    }

    fn restore_backup(
        &self,
        uri: &str,
        input: &Path,
        output: &Path,
        _disk: &str,
        files: &[String],
    ) -> Result<()> {
        // --sequence names the files in chain order (virtnbdrestore's own --until orders them
        // by modification time) and makes the output file name the disk target.
        let (input, output) = (input.display().to_string(), output.display().to_string());
        let sequence = files.join(",");
        let args = [
            "-U",
            uri,
            "-i",
            &input,
            "-o",
            &output,
            "--sequence",
            &sequence,
        ];
        // Its progress goes to the terminal; its stderr tail is in the error.
        let status = std::process::Command::new("virtnbdrestore")
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .context("running virtnbdrestore (is the virtnbdbackup package installed?)")?;
        if !status.success() {
            anyhow::bail!(
                "virtnbdrestore {} failed ({status}); its messages are above",
                args.join(" ")
            );
        }
        Ok(())
    }

    fn link_exists(&self, name: &str) -> Result<bool> {
        Ok(Path::new("/sys/class/net").join(name).exists())
    }

    fn bridge_members(&self, bridge: &str) -> Result<Vec<String>> {
        let brif = Path::new("/sys/class/net").join(bridge).join("brif");
        let mut members: Vec<String> = std::fs::read_dir(&brif)
            .with_context(|| {
                format!(
                    "reading {} (is reclab running on the hypervisor?)",
                    brif.display()
                )
            })?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        members.sort();
        Ok(members)
    }

    fn quiet_bridge(&self, bridge: &str) -> Result<()> {
        for (path, value) in [
            (
                format!("/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6"),
                "1",
            ),
            (format!("/proc/sys/net/ipv4/conf/{bridge}/arp_ignore"), "8"),
        ] {
            if Path::new(&path).exists() {
                std::fs::write(&path, value).with_context(|| format!("writing {path}"))?;
            }
        }
        Ok(())
    }

    fn host_addresses(&self) -> Result<Vec<String>> {
        let out = sys::run_stdout("ip", &["-4", "-o", "addr", "show"])?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .filter_map(|cidr| cidr.split('/').next())
            .filter(|a| !a.starts_with("127."))
            .map(String::from)
            .collect())
    }

    fn link_local_address(&self, link: &str) -> Result<Option<String>> {
        let table = match std::fs::read_to_string("/proc/net/if_inet6") {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context("reading /proc/net/if_inet6"),
        };
        Ok(link_local_in(&table, link))
    }

    fn firewall_insert(&self, program: &str, chain: &str, rule: &[String]) -> Result<()> {
        let mut args = vec!["-w", "-I", chain];
        args.extend(rule.iter().map(String::as_str));
        sys::run(program, &args)?;
        Ok(())
    }

    fn firewall_present(&self, program: &str, chain: &str, rule: &[String]) -> Result<bool> {
        let mut check = vec!["-w", "-C", chain];
        check.extend(rule.iter().map(String::as_str));
        Ok(std::process::Command::new(program)
            .args(&check)
            .stderr(std::process::Stdio::null())
            .status()
            .with_context(|| format!("running {program}"))?
            .success())
    }

    fn firewall_delete(&self, program: &str, chain: &str, rule: &[String]) -> Result<()> {
        let mut del = vec!["-w", "-D", chain];
        del.extend(rule.iter().map(String::as_str));
        sys::run(program, &del)?;
        Ok(())
    }

    fn firewall_rules(&self, program: &str) -> Result<String> {
        sys::run_stdout(program, &["-w", "-S"])
    }

    fn netns_add(&self, name: &str) -> Result<()> {
        sys::run("ip", &["netns", "add", name])
            .with_context(|| format!("creating namespace {name}"))?;
        sys::run("ip", &["-n", name, "link", "set", "lo", "up"])?;
        Ok(())
    }

    fn netns_remove(&self, name: &str) -> Result<()> {
        crate::lab::teardown::remove_netns(name)
    }

    fn netns_list(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = match std::fs::read_dir("/run/netns") {
            Ok(d) => d
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
            Err(e) => return Err(e).context("reading /run/netns"),
        };
        names.sort();
        Ok(names)
    }

    fn veth_add(
        &self,
        link: &str,
        bridge: &str,
        netns: &str,
        inner: &str,
        cidr: &str,
    ) -> Result<()> {
        sys::run(
            "ip",
            &[
                "link", "add", link, "type", "veth", "peer", "name", inner, "netns", netns,
            ],
        )?;
        sys::run("ip", &["link", "set", link, "master", bridge, "up"])?;
        sys::run("ip", &["-n", netns, "addr", "add", cidr, "dev", inner])?;
        sys::run("ip", &["-n", netns, "link", "set", inner, "up"])?;
        Ok(())
    }

    fn link_remove(&self, name: &str) -> Result<()> {
        let link = Path::new("/sys/class/net").join(name);
        if link.exists()
            && let Err(e) = sys::run("ip", &["link", "del", name])
        {
            // A veth also goes away by itself, asynchronously, when the namespace holding
            // its peer is freed (its last process ended): gone in the meantime is success.
            if link.exists() {
                return Err(e);
            }
        }
        Ok(())
    }

    fn start_dnsmasq(&self, netns: &str, conf: &Path) -> Result<()> {
        let conf_arg = format!("--conf-file={}", conf.display());
        sys::run("ip", &["netns", "exec", netns, "dnsmasq", &conf_arg])?;
        Ok(())
    }

    fn stop_process(&self, pidfile: &Path, netns: &str) -> Result<()> {
        crate::lab::teardown::stop_process(pidfile, netns)
    }

    fn owner_register(&self, run8: &str, dir: &Path) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(OWNERS_DIR)
            .with_context(|| format!("creating {OWNERS_DIR}"))?;
        let link = Path::new(OWNERS_DIR).join(run8);
        match std::os::unix::fs::symlink(dir, &link) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                match self.owner_of(run8)? {
                    Some(d) if d == dir => Ok(()),
                    other => anyhow::bail!(
                        "run id {run8} is already registered to {} in {OWNERS_DIR}; start the \
                         lab again (a new run gets a new id)",
                        other.map(|d| d.display().to_string()).unwrap_or_default()
                    ),
                }
            }
            Err(e) => Err(e).with_context(|| format!("registering {}", link.display())),
        }
    }

    fn owner_of(&self, run8: &str) -> Result<Option<PathBuf>> {
        let link = Path::new(OWNERS_DIR).join(run8);
        match std::fs::read_link(&link) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", link.display())),
        }
    }

    fn owner_remove(&self, run8: &str, dir: &Path) -> Result<()> {
        if self.owner_of(run8)?.as_deref() != Some(dir) {
            return Ok(());
        }
        let link = Path::new(OWNERS_DIR).join(run8);
        match std::fs::remove_file(&link) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", link.display())),
        }
    }

    fn vm_process(&self, domain: &str) -> Result<Option<u32>> {
        let want = format!("guest={domain}");
        let entries = std::fs::read_dir("/proc").context("reading /proc")?;
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let runs_it = cmdline.split(|b| *b == 0).any(|arg| {
                arg.strip_prefix(want.as_bytes())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(b","))
            });
            if runs_it {
                return Ok(Some(pid));
            }
        }
        Ok(None)
    }
}

/// The link-local address of `link` in a `/proc/net/if_inet6` table, whose lines read
/// `fe80000000000000fc5400fffe123456 03 40 20 80 vnet0`: address, index, prefix length,
/// scope (0x20: link), flags, name.
fn link_local_in(table: &str, link: &str) -> Option<String> {
    table.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() == 6 && f[5] == link && f[3] == "20")
            .then(|| u128::from_str_radix(f[0], 16).ok())
            .flatten()
            .map(|a| std::net::Ipv6Addr::from(a).to_string())
    })
}

#[cfg(test)]
mod link_local_tests {
    use super::link_local_in;

    #[test]
    fn the_link_local_address_of_a_link_is_read_from_if_inet6() {
        let table = "fd000000000000000000000000000002 04 40 00 82     eth0\n\
                     fe8000000000000000fc00fffe000001 04 40 20 80     eth0\n\
                     fe80000000000000fc5400fffe123456 07 40 20 80    vnet7\n\
                     00000000000000000000000000000001 01 80 10 80       lo\n";
        assert_eq!(
            link_local_in(table, "vnet7").as_deref(),
            Some("fe80::fc54:ff:fe12:3456")
        );
        assert_eq!(
            link_local_in(table, "eth0").as_deref(),
            Some("fe80::fc:ff:fe00:1")
        );
        assert_eq!(link_local_in(table, "lo"), None);
        assert_eq!(link_local_in(table, "vnet"), None);
    }
}
