//! A recording, in-memory fake [`Host`] for unit tests (built for the crate's tests only:
//! `cfg(test)` or the `test-hooks` feature).
//!
//! [`FakeHost`] keeps what it was asked to create — firewall rules, network namespaces,
//! links, daemons — records every call in order ([`FakeHost::calls`]) and can be told to fail,
//! like `hv::fake::FakeHv`: on the Nth call overall ([`FakeHost::fail_at`]) or on the Nth call
//! of one operation ([`FakeHost::fail_on`]). A failed call is recorded but changes nothing.
//!
//! Files are real: overlays, nvram copies and data disks are written where asked (a test's
//! temporary directory), so that the run directory and its removal are the real ones. The
//! kernel's side effects are modelled where teardown depends on them: deleting a namespace
//! ends the daemons inside it and the veths whose peer it holds.

use anyhow::{Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::hv::fake::InjectedFailure;
use crate::lab::host::Host;
use crate::lab::resolved::Layer;
use crate::restore::record::{DataDisk, PlannedInjection};

/// A firewall rule: program, chain, rule spec.
pub type Rule = (String, String, Vec<String>);

/// A link of the fake host: the bridge it is enslaved to and the namespace holding its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeLink {
    pub bridge: String,
    pub peer_netns: String,
}

#[derive(Default)]
struct State {
    calls: Vec<String>,
    op_counts: BTreeMap<String, usize>,
    fail_at: Vec<usize>,
    fail_on: Vec<(String, usize)>,
    /// In chain order (an insert goes first).
    rules: Vec<Rule>,
    netns: BTreeSet<String>,
    links: BTreeMap<String, FakeLink>,
    /// Daemons by namespace, with their configuration file.
    daemons: BTreeMap<String, PathBuf>,
    addresses: Vec<String>,
    /// IPv6 link-local addresses of links the host did not create (libvirt's taps).
    link_local: BTreeMap<String, String>,
    /// QEMU processes by the domain they run (see [`FakeHost::set_vm_process`]).
    vm_processes: BTreeMap<String, u32>,
    /// Run directories by run short id ([`Host::owner_register`]).
    owners: BTreeMap<String, PathBuf>,
}

/// The fake host. See the module documentation. A clone shares the same host.
#[derive(Clone, Default)]
pub struct FakeHost {
    state: Arc<Mutex<State>>,
}

impl FakeHost {
    /// A host whose only address (loopback aside) is `192.0.2.1`.
    pub fn new() -> Self {
        let host = FakeHost::default();
        host.state().addresses = vec!["192.0.2.1".into()];
        host
    }

    /// Replace the host's IPv4 addresses (loopback aside).
    pub fn set_addresses(&self, addresses: &[&str]) {
        self.state().addresses = addresses.iter().map(|a| a.to_string()).collect();
    }

    /// Give `link` (e.g. a tap libvirt made for a VM) the IPv6 link-local address `addr`.
    pub fn set_link_local(&self, link: &str, addr: &str) {
        self.state().link_local.insert(link.into(), addr.into());
    }

    /// Make the `n`th call overall (1-based, counting every trait call) fail.
    pub fn fail_at(&self, n: usize) {
        self.state().fail_at.push(n);
    }

    /// Make the `n`th call (1-based) of operation `op` (the trait method's name, e.g.
    /// `"netns_add"`) fail.
    pub fn fail_on(&self, op: &str, n: usize) {
        self.state().fail_on.push((op.to_string(), n));
    }

    /// Every call so far, in order: the operation's name and its main argument.
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    pub fn rules(&self) -> Vec<Rule> {
        self.state().rules.clone()
    }

    pub fn namespaces(&self) -> Vec<String> {
        self.state().netns.iter().cloned().collect()
    }

    pub fn links(&self) -> BTreeMap<String, FakeLink> {
        self.state().links.clone()
    }

    /// Say that a QEMU process with `pid` runs `domain` on this host (`None`: none does). The
    /// fake hypervisor does not tell the fake host; a test that stops the fake daemon says
    /// what still runs.
    pub fn set_vm_process(&self, domain: &str, pid: Option<u32>) {
        let mut st = self.state();
        match pid {
            Some(p) => st.vm_processes.insert(domain.to_string(), p),
            None => st.vm_processes.remove(domain),
        };
    }

    /// The registered owners: run short id → run directory.
    pub fn owners(&self) -> BTreeMap<String, PathBuf> {
        self.state().owners.clone()
    }

    /// Running daemons: namespace → configuration file.
    pub fn daemons(&self) -> BTreeMap<String, PathBuf> {
        self.state().daemons.clone()
    }

    /// Whether nothing is left: no rule, namespace, link or daemon.
    pub fn is_clean(&self) -> bool {
        let st = self.state();
        st.rules.is_empty() && st.netns.is_empty() && st.links.is_empty() && st.daemons.is_empty()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record a call and apply failure injection.
    fn record(&self, op: &str, arg: &str) -> Result<MutexGuard<'_, State>> {
        let mut st = self.state();
        st.calls.push(format!("{op} {arg}"));
        let call = st.calls.len();
        let count = {
            let c = st.op_counts.entry(op.to_string()).or_default();
            *c += 1;
            *c
        };
        if st.fail_at.contains(&call) || st.fail_on.iter().any(|(o, n)| o == op && *n == count) {
            return Err(anyhow::Error::new(InjectedFailure {
                op: format!("{op} {arg}"),
                call,
            }));
        }
        Ok(st)
    }
}

fn write_file(path: &Path, what: &str) -> Result<()> {
    std::fs::write(path, what)
        .map_err(|e| anyhow::anyhow!("fake host: writing {}: {e}", path.display()))
}

impl Host for FakeHost {
    fn create_overlay(&self, overlay: &Path, backing: &Layer) -> Result<()> {
        let _st = self.record("create_overlay", &overlay.display().to_string())?;
        write_file(overlay, &format!("overlay of {}", backing.path.display()))
    }

    fn copy_file(&self, from: &Path, to: &Path) -> Result<()> {
        let _st = self.record("copy_file", &to.display().to_string())?;
        std::fs::copy(from, to)
            .map_err(|e| anyhow::anyhow!("fake host: copying {}: {e}", from.display()))?;
        Ok(())
    }

    fn copy_tree(&self, from: &Path, to: &Path) -> Result<()> {
        let _st = self.record("copy_tree", &to.display().to_string())?;
        crate::base::fs::copy_tree(from, to)
    }

    fn build_data_disk(&self, p: &mut PlannedInjection, image: &Path) -> Result<()> {
        let _st = self.record("build_data_disk", &image.display().to_string())?;
        write_file(image, "data disk")?;
        p.record.data_disk = Some(DataDisk {
            path: image.to_path_buf(),
            format: p.dumps.format,
            bytes: 9,
            files: Vec::new(),
        });
        Ok(())
    }

    fn restore_backup(
        &self,
        _uri: &str,
        input: &Path,
        output: &Path,
        disk: &str,
        files: &[String],
    ) -> Result<()> {
        let _st = self.record("restore_backup", &output.join(disk).display().to_string())?;
        write_file(
            &output.join(disk),
            &format!(
                "{disk} restored from {} {}",
                input.display(),
                files.join(",")
            ),
        )
    }

    fn link_exists(&self, name: &str) -> Result<bool> {
        let st = self.record("link_exists", name)?;
        Ok(st.links.contains_key(name))
    }

    fn bridge_members(&self, bridge: &str) -> Result<Vec<String>> {
        let st = self.record("bridge_members", bridge)?;
        Ok(st
            .links
            .iter()
            .filter(|(_, l)| l.bridge == bridge)
            .map(|(n, _)| n.clone())
            .collect())
    }

    fn quiet_bridge(&self, bridge: &str) -> Result<()> {
        self.record("quiet_bridge", bridge).map(|_| ())
    }

    fn host_addresses(&self) -> Result<Vec<String>> {
        let st = self.record("host_addresses", "")?;
        Ok(st.addresses.clone())
    }

    fn link_local_address(&self, link: &str) -> Result<Option<String>> {
        let st = self.record("link_local_address", link)?;
        Ok(st.link_local.get(link).cloned())
    }

    fn firewall_insert(&self, program: &str, chain: &str, rule: &[String]) -> Result<()> {
        let mut st = self.record("firewall_insert", &format!("{program} {chain}"))?;
        st.rules
            .insert(0, (program.into(), chain.into(), rule.to_vec()));
        Ok(())
    }

    fn firewall_present(&self, program: &str, chain: &str, rule: &[String]) -> Result<bool> {
        let st = self.record("firewall_present", &format!("{program} {chain}"))?;
        Ok(st
            .rules
            .iter()
            .any(|(p, c, r)| p == program && c == chain && r == rule))
    }

    fn firewall_delete(&self, program: &str, chain: &str, rule: &[String]) -> Result<()> {
        let mut st = self.record("firewall_delete", &format!("{program} {chain}"))?;
        let Some(at) = st
            .rules
            .iter()
            .position(|(p, c, r)| p == program && c == chain && r == rule)
        else {
            bail!("{program}: Bad rule (does a matching rule exist in that chain?)");
        };
        st.rules.remove(at);
        Ok(())
    }

    fn firewall_rules(&self, program: &str) -> Result<String> {
        let st = self.record("firewall_rules", program)?;
        let mut out = String::new();
        for (_, chain, rule) in st.rules.iter().filter(|(p, _, _)| p == program) {
            let words: Vec<String> = rule
                .iter()
                .map(|w| {
                    if w.contains(':') {
                        format!("\"{w}\"")
                    } else {
                        w.clone()
                    }
                })
                .collect();
            out.push_str(&format!("-A {chain} {}\n", words.join(" ")));
        }
        Ok(out)
    }

    fn netns_add(&self, name: &str) -> Result<()> {
        let mut st = self.record("netns_add", name)?;
        if !st.netns.insert(name.to_string()) {
            bail!("Cannot create namespace file \"/run/netns/{name}\": File exists");
        }
        Ok(())
    }

    fn netns_remove(&self, name: &str) -> Result<()> {
        let mut st = self.record("netns_remove", name)?;
        // Its processes end, and with the namespace go the veths whose peer it held.
        st.daemons.remove(name);
        st.links.retain(|_, l| l.peer_netns != name);
        st.netns.remove(name);
        Ok(())
    }

    fn netns_list(&self) -> Result<Vec<String>> {
        let st = self.record("netns_list", "")?;
        Ok(st.netns.iter().cloned().collect())
    }

    fn veth_add(
        &self,
        link: &str,
        bridge: &str,
        netns: &str,
        _inner: &str,
        _cidr: &str,
    ) -> Result<()> {
        let mut st = self.record("veth_add", link)?;
        if !st.netns.contains(netns) {
            bail!("Cannot open network namespace \"{netns}\": No such file or directory");
        }
        if st.links.contains_key(link) {
            bail!("RTNETLINK answers: File exists");
        }
        st.links.insert(
            link.to_string(),
            FakeLink {
                bridge: bridge.to_string(),
                peer_netns: netns.to_string(),
            },
        );
        Ok(())
    }

    fn link_remove(&self, name: &str) -> Result<()> {
        let mut st = self.record("link_remove", name)?;
        st.links.remove(name);
        Ok(())
    }

    fn start_dnsmasq(&self, netns: &str, conf: &Path) -> Result<()> {
        let mut st = self.record("start_dnsmasq", netns)?;
        if !st.netns.contains(netns) {
            bail!("Cannot open network namespace \"{netns}\": No such file or directory");
        }
        if !conf.exists() {
            bail!(
                "dnsmasq: cannot read {}: No such file or directory",
                conf.display()
            );
        }
        st.daemons.insert(netns.to_string(), conf.to_path_buf());
        Ok(())
    }

    fn stop_process(&self, pidfile: &Path, netns: &str) -> Result<()> {
        let mut st = self.record("stop_process", &pidfile.display().to_string())?;
        st.daemons.remove(netns);
        Ok(())
    }

    fn vm_process(&self, domain: &str) -> Result<Option<u32>> {
        let st = self.record("vm_process", domain)?;
        Ok(st.vm_processes.get(domain).copied())
    }

    fn owner_register(&self, run8: &str, dir: &Path) -> Result<()> {
        let mut st = self.record("owner_register", run8)?;
        match st.owners.get(run8) {
            Some(d) if d != dir => bail!("run id {run8} is already registered to {}", d.display()),
            _ => {
                st.owners.insert(run8.to_string(), dir.to_path_buf());
                Ok(())
            }
        }
    }

    fn owner_of(&self, run8: &str) -> Result<Option<PathBuf>> {
        let st = self.record("owner_of", run8)?;
        Ok(st.owners.get(run8).cloned())
    }

    fn owner_remove(&self, run8: &str, dir: &Path) -> Result<()> {
        let mut st = self.record("owner_remove", run8)?;
        if st.owners.get(run8).map(PathBuf::as_path) == Some(dir) {
            st.owners.remove(run8);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_call_changes_nothing_and_deleting_a_namespace_takes_its_daemon_and_veth() {
        let host = FakeHost::new();
        host.fail_on("netns_add", 1);
        assert!(host.netns_add("ns").is_err());
        assert!(host.namespaces().is_empty());
        host.netns_add("ns").unwrap();
        host.veth_add("rv0", "rl0", "ns", "ls0", "10.0.0.1/24")
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let conf = tmp.path().join("x.conf");
        std::fs::write(&conf, "").unwrap();
        host.start_dnsmasq("ns", &conf).unwrap();
        assert_eq!(host.bridge_members("rl0").unwrap(), vec!["rv0"]);
        host.netns_remove("ns").unwrap();
        assert!(host.is_clean());
        assert_eq!(host.calls().len(), 6);
    }
}
