//! `reclab extend LAB DURATION`: move a running lab's expiry later.
//!
//! `run.json`'s `expires` is authoritative (it is what `reclab gc` and `reclab status` read);
//! the `expires` in each lab domain's reclab metadata is informational and is updated when the
//! hypervisor connection allows it. A failure there is reported, not fatal. An expired lab
//! cannot be extended: `reclab gc` removes it, and a new one is started with `reclab up`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use jiff::{SignedDuration, Timestamp};
use quick_xml::escape::partial_escape;
use serde::Serialize;

use crate::hv::Hypervisor;
use crate::lab::find_runs;
use crate::lab::lock::{RunLock, TryLock};
use crate::lab::record::RunState;
use crate::xml::domain::{LabMetadata, RECLAB_NS, RECLAB_PREFIX, parse_lab_metadata};

/// What `extend` did.
#[derive(Debug, Clone, Serialize)]
pub struct Extended {
    pub lab: String,
    pub run: String,
    pub old_expires: String,
    pub new_expires: String,
    /// Domains whose metadata now carries the new expiry.
    pub metadata_updated: Vec<String>,
    /// Domains whose metadata could not be updated, with the reason.
    pub metadata_failed: Vec<String>,
}

/// The `<lab>` element libvirt stores under reclab's namespace.
pub fn metadata_element(m: &LabMetadata) -> String {
    format!(
        "<lab><name>{}</name><run>{}</run><vm>{}</vm><created>{}</created><expires>{}</expires></lab>",
        partial_escape(&m.lab),
        partial_escape(&m.run),
        partial_escape(&m.vm),
        partial_escape(&m.created),
        partial_escape(&m.expires)
    )
}

/// Extends the one run that `which` (a lab name or run id) names by `by`, from its current
/// expiry; `now` decides whether it has already expired.
pub fn extend(
    state_dir: &Path,
    which: &str,
    by: Duration,
    now: Timestamp,
    open: &dyn Fn(&str) -> Result<Box<dyn Hypervisor>>,
) -> Result<Extended> {
    let runs = find_runs(state_dir, Some(which))?;
    let (dir, rec) = match runs.as_slice() {
        [(dir, Some(rec))] => (dir.clone(), rec.clone()),
        [(dir, None)] => bail!(
            "run {} has no run record (it crashed while starting); remove it with `reclab gc`",
            dir.path.display()
        ),
        [] => bail!("no running lab {which:?}; see `reclab status`"),
        _ => bail!("{which:?} names several runs; give a run id (see `reclab status`)"),
    };
    let short = rec.run_id.short().to_string();
    // Under the run's lock, like every command that changes a run: a concurrent `down` or
    // `gc` must not remove the run while its record is rewritten here, nor an `up` or `run`
    // save a record read before this one. The lock is only tried: a `reclab run` holds it for
    // its whole drill (its lab ends with the drill, and gc never removes a locked run).
    let _lock = match RunLock::try_acquire(&dir)? {
        TryLock::Locked(lock) => lock,
        TryLock::Busy => bail!(
            "lab {} run {short} is busy: another reclab process holds its lock (an up or run \
             using it, or a down or gc removing it); extend it once that has finished (a lab \
             of `reclab run` lives until its drill ends)",
            rec.lab
        ),
        TryLock::Gone => bail!("no running lab {which:?}; see `reclab status`"),
    };
    // Read again under the lock: the holder we waited for may have changed it.
    let mut rec = dir
        .load_record()?
        .with_context(|| format!("run {short} lost its run record"))?;
    if !matches!(rec.state, RunState::Up | RunState::Failed) {
        bail!(
            "lab {} run {short} is {}; only a lab that is up can be extended",
            rec.lab,
            rec.state.as_str()
        );
    }
    let old: Timestamp = rec
        .expires
        .parse()
        .with_context(|| format!("reading the expiry {:?} of run {short}", rec.expires))?;
    if old <= now {
        bail!(
            "lab {} run {short} expired at {old}; expired labs cannot be extended (`reclab gc` removes it; start a new one with `reclab up`)",
            rec.lab
        );
    }
    let by = SignedDuration::try_from(by).context("the extension is too long")?;
    let new = old
        .checked_add(by)
        .context("the new expiry is out of range")?;
    let old_text = rec.expires.clone();
    rec.expires = new.to_string();
    dir.save_record(&rec)
        .with_context(|| format!("saving the new expiry of run {short}"))?;

    let mut updated = Vec::new();
    let mut failed = Vec::new();
    match open(&rec.uri) {
        Err(e) => {
            for vm in &rec.vms {
                failed.push(format!("{}: {e:#}", vm.domain));
            }
        }
        Ok(hv) => {
            for vm in &rec.vms {
                match update_metadata(hv.as_ref(), &vm.domain, &rec.expires) {
                    Ok(()) => updated.push(vm.domain.clone()),
                    Err(e) => failed.push(format!("{}: {e:#}", vm.domain)),
                }
            }
        }
    }
    Ok(Extended {
        lab: rec.lab.clone(),
        run: short,
        old_expires: old_text,
        new_expires: rec.expires.clone(),
        metadata_updated: updated,
        metadata_failed: failed,
    })
}

fn update_metadata(hv: &dyn Hypervisor, domain: &str, expires: &str) -> Result<()> {
    let xml = hv
        .domain_metadata(domain, RECLAB_NS)?
        .context("the domain has no reclab metadata")?;
    let mut meta =
        parse_lab_metadata(&xml).context("the domain's reclab metadata is incomplete")?;
    meta.expires = expires.to_string();
    hv.set_domain_metadata(domain, RECLAB_NS, RECLAB_PREFIX, &metadata_element(&meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_element_reads_back() {
        let m = LabMetadata {
            lab: "erp".into(),
            run: "0123abcd-0000".into(),
            vm: "db".into(),
            created: "2026-11-26T10:00:00Z".into(),
            expires: "2026-11-26T20:00:00Z".into(),
        };
        // libvirt hands the element back in reclab's namespace.
        let xml =
            metadata_element(&m).replacen("<lab>", &format!("<lab xmlns=\"{RECLAB_NS}\">"), 1);
        assert_eq!(parse_lab_metadata(&xml), Some(m));
    }
}
