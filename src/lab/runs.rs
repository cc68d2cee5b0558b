//! Finding runs in the state directory, and their status.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::Path;

use crate::hv::{DomState, Hypervisor};
use crate::lab::journal::RunDir;
use crate::lab::record::{RunRecord, VmRecord};

/// Runs matching a lab name or run id (all runs with `None`).
pub fn find_runs(
    state_dir: &Path,
    which: Option<&str>,
) -> Result<Vec<(RunDir, Option<RunRecord>)>> {
    let mut out = Vec::new();
    for dir in RunDir::all(state_dir)? {
        let rec = dir.load_record()?;
        let short = dir
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let matches = match which {
            None => true,
            Some(w) => {
                short == w
                    || rec
                        .as_ref()
                        .is_some_and(|r| r.lab == w || r.run_id.0.starts_with(w))
            }
        };
        if matches {
            out.push((dir, rec));
        }
    }
    Ok(out)
}

/// Find exactly one run by lab name or run id; errors name the way out.
pub fn find_run(state_dir: &Path, which: &str) -> Result<(RunDir, RunRecord)> {
    let runs = find_runs(state_dir, Some(which))?;
    let mut with_record: Vec<(RunDir, RunRecord)> = runs
        .into_iter()
        .filter_map(|(d, r)| r.map(|r| (d, r)))
        .collect();
    match with_record.len() {
        0 => bail!("no running lab {which:?}; see `reclab status`"),
        1 => Ok(with_record.remove(0)),
        _ => bail!("{which:?} names several runs; give a run id (see `reclab status`)"),
    }
}

/// The VM `name` of a run; the error lists the lab's VMs.
pub fn find_vm<'a>(rec: &'a RunRecord, name: &str) -> Result<&'a VmRecord> {
    rec.vms.iter().find(|v| v.name == name).with_context(|| {
        let names: Vec<&str> = rec.vms.iter().map(|v| v.name.as_str()).collect();
        format!(
            "lab {} has no vm {name:?}; its vms: {}",
            rec.lab,
            names.join(", ")
        )
    })
}

/// `status` entry for one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunStatus {
    pub lab: String,
    pub run: String,
    pub state: String,
    pub created: String,
    pub expires: String,
    pub seconds_left: i64,
    pub vms: Vec<VmStatus>,
    pub networks: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VmStatus {
    pub name: String,
    pub domain: String,
    pub state: String,
    pub addresses: Vec<String>,
    pub macs: Vec<String>,
    pub console: Option<String>,
}

pub fn status(
    state_dir: &Path,
    which: Option<&str>,
    open: &dyn Fn(&str) -> Result<Box<dyn Hypervisor>>,
) -> Result<Vec<RunStatus>> {
    let now = jiff::Timestamp::now();
    let mut out = Vec::new();
    for (_, rec) in find_runs(state_dir, which)? {
        let Some(rec) = rec else { continue };
        let hv = open(&rec.uri).ok();
        let mut vms = Vec::new();
        for vm in &rec.vms {
            let (state, console) = match &hv {
                Some(hv) => {
                    let st = match hv.domain_state(&vm.domain) {
                        Ok(Some(DomState::Running)) => "running",
                        Ok(Some(DomState::Paused)) => "paused",
                        Ok(Some(DomState::ShutOff)) => "shut off",
                        Ok(Some(DomState::Crashed)) => "crashed",
                        Ok(Some(DomState::Other)) => "other",
                        Ok(None) => "absent",
                        Err(_) => "unknown",
                    };
                    let console = hv
                        .domain_xml(&vm.domain, false)
                        .ok()
                        .and_then(|x| crate::xml::facts::facts(&x).ok())
                        .and_then(|f| f.graphics.iter().find_map(|g| g.endpoint()));
                    (st.to_string(), console)
                }
                None => ("unreachable".to_string(), None),
            };
            vms.push(VmStatus {
                name: vm.name.clone(),
                domain: vm.domain.clone(),
                state,
                addresses: vm.addresses.clone(),
                macs: vm.macs.clone(),
                console,
            });
        }
        let left = rec
            .expires
            .parse::<jiff::Timestamp>()
            .map(|e| e.as_second() - now.as_second())
            .unwrap_or(0);
        out.push(RunStatus {
            lab: rec.lab.clone(),
            run: rec.run_id.short().to_string(),
            state: rec.state.as_str().to_string(),
            created: rec.created.clone(),
            expires: rec.expires.clone(),
            seconds_left: left,
            vms,
            networks: rec.networks.clone(),
        });
    }
    Ok(out)
}
