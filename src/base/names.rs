//! Names of everything reclab creates, derived from the lab name and the run id. Pure.
//!
//! Every libvirt object reclab creates starts with `reclab-`; bridges and links start with
//! `rl`/`rv` and fit the kernel's 15-character interface-name limit.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A run's identity: a random UUID, shown and used in names by its first 8 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RunId(pub String);

impl RunId {
    pub fn new() -> Self {
        RunId(uuid::Uuid::new_v4().simple().to_string())
    }

    /// The 8 hex digits used in names.
    pub fn short(&self) -> &str {
        &self.0[..8]
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

/// Prefix of every libvirt domain and network reclab creates.
pub const PREFIX: &str = "reclab-";

/// `reclab-<lab>-<run8>-<vm>`.
pub fn domain_name(lab: &str, run: &RunId, vm: &str) -> String {
    format!("{PREFIX}{lab}-{}-{vm}", run.short())
}

/// `reclab-<run8>-<segment>`.
pub fn network_name(run: &RunId, segment: &str) -> String {
    format!("{PREFIX}{}-{segment}", run.short())
}

/// `rl<run8>s<index>`: at most 13 characters for index < 100.
pub fn bridge_name(run: &RunId, index: usize) -> String {
    format!("rl{}s{index}", run.short())
}

/// Host side of the veth joining a segment's lab-services namespace to its bridge.
pub fn services_link(run: &RunId, index: usize) -> String {
    format!("rv{}s{index}", run.short())
}

/// The network namespace holding a segment's lab services (DNS/DHCP).
pub fn services_netns(run: &RunId, segment: &str) -> String {
    format!("{PREFIX}{}-{segment}", run.short())
}

/// Comment tagging reclab's firewall rules, matched on teardown and by `gc`.
pub fn firewall_tag(run: &RunId) -> String {
    format!("reclab:{}", run.short())
}

/// The directory a run restores a restore-cache entry into before renaming it into place.
pub fn restore_tmp(cache: &std::path::Path, key: &str, run: &RunId) -> std::path::PathBuf {
    cache.join(format!(".tmp-{key}-{}", run.short()))
}

/// A run's lease on a restore-cache entry: while it exists (and its run directory does) the
/// entry is not evicted.
pub fn restore_lease(cache: &std::path::Path, key: &str, run: &RunId) -> std::path::PathBuf {
    cache.join("leases").join(format!("{key}@{}", run.short()))
}

/// A VM's data disk image in the run directory: `<vm>-data.<extension>` (`img` for ext4,
/// `iso` for ISO 9660).
pub fn data_disk_image(run_dir: &std::path::Path, vm: &str, extension: &str) -> std::path::PathBuf {
    run_dir.join(format!("{vm}-data.{extension}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_ifnamsiz() {
        let run = RunId::new();
        for i in [0, 9, 99] {
            assert!(bridge_name(&run, i).len() <= 15);
            assert!(services_link(&run, i).len() <= 15);
        }
    }

    #[test]
    fn names_carry_lab_run_and_vm() {
        let run = RunId("0123456789abcdef0123456789abcdef".into());
        assert_eq!(domain_name("erp", &run, "db"), "reclab-erp-01234567-db");
        assert_eq!(network_name(&run, "lan"), "reclab-01234567-lan");
        assert_eq!(bridge_name(&run, 0), "rl01234567s0");
        assert_eq!(firewall_tag(&run), "reclab:01234567");
    }
}
