//! `reclab forward LAB VM:PORT`: a loopback listener whose connections are carried to a lab
//! VM's TCP port, entering the lab from the lab side of its lab-services namespace (like
//! `reclab serve`'s published apps). For remote use, tunnel the loopback port over SSH, as with
//! `console --vnc`. Every connection and the listener close when the lab expires or is torn
//! down.

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::access::console::Lease;
use crate::lab::journal::RunDir;
use crate::lab::record::{PublishKind, PublishedPort, RunRecord};

/// `VM:PORT` as given.
pub fn parse_target(s: &str) -> Result<(String, u16)> {
    let (vm, port) = s
        .rsplit_once(':')
        .with_context(|| format!("{s:?}: give the target as VM:PORT, for example db:5432"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .with_context(|| format!("{s:?}: {port:?} is no tcp port (1 to 65535)"))?;
    if vm.is_empty() {
        bail!("{s:?}: give the vm's name before the port, for example db:5432");
    }
    Ok((vm.to_string(), port))
}

/// Where a connection to `vm:port` enters the lab: the namespace and address of a published
/// port of that VM, or, in a lab with a single lab-services segment, the VM's first address.
pub fn target(rec: &RunRecord, vm: &str, port: u16) -> Result<PublishedPort> {
    let v = crate::access::console::find_vm(rec, vm)?;
    if let Some(p) = rec.publish.iter().find(|p| p.vm == vm) {
        return Ok(PublishedPort {
            name: format!("{vm}:{port}"),
            port,
            kind: PublishKind::Tcp,
            ..p.clone()
        });
    }
    let with_services: Vec<_> = rec
        .segments
        .iter()
        .filter(|s| s.services_link.is_some())
        .collect();
    match (with_services.as_slice(), v.addresses.first()) {
        ([seg], Some(addr)) => Ok(PublishedPort {
            name: format!("{vm}:{port}"),
            vm: vm.to_string(),
            port,
            kind: PublishKind::Tcp,
            address: addr.clone(),
            names: vec![],
            segment: seg.name.clone(),
            netns: crate::base::names::services_netns(&rec.run_id, &seg.name),
        }),
        _ => bail!(
            "cannot tell how to reach vm {vm} of lab {}: connections enter a lab through a \
             segment's lab services, and {}; add a [[publish]] of a port of {vm} to the lab file",
            rec.lab,
            if v.addresses.is_empty() {
                "the vm has no known address".to_string()
            } else {
                format!(
                    "the lab has {} segments with lab services",
                    with_services.len()
                )
            }
        ),
    }
}

/// Listen on `listen` (loopback only) and carry every connection to `t` until the lab ends.
pub fn forward(dir: &RunDir, rec: &RunRecord, t: &PublishedPort, listen: SocketAddr) -> Result<()> {
    if !listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {listen}: forward listens on loopback only (127.0.0.1); for \
             remote use tunnel it, e.g. ssh -L {p}:127.0.0.1:{p} hypervisor",
            p = listen.port()
        );
    }
    let mut lease = Lease::new(dir, rec)?;
    let listener = TcpListener::bind(listen).with_context(|| format!("listening on {listen}"))?;
    let bound = listener
        .local_addr()
        .context("reading the listen address")?;
    listener
        .set_nonblocking(true)
        .context("making the listener non-blocking")?;
    println!(
        "forwarding {bound} to {}:{} ({}) in lab {} until {} (Ctrl-C to stop)",
        t.vm,
        t.port,
        t.address,
        rec.lab,
        lease.expires()
    );
    std::io::stdout().flush().ok();
    let _signals = crate::base::cancel::catch_signals();
    let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let result = std::thread::scope(|scope| -> Result<()> {
        let result = loop {
            if !lease.valid() {
                break Err(anyhow::anyhow!(
                    "lab {} expired at {} (or was torn down): forward closed",
                    rec.lab,
                    lease.expires()
                ));
            }
            if crate::base::cancel::received().is_some() {
                break Ok(());
            }
            match listener.accept() {
                Ok((client, peer)) => {
                    let upstream = match crate::lab::services::connect::connect_published(
                        &dir.path,
                        t,
                        Duration::from_secs(10),
                    ) {
                        Ok(s) => s,
                        Err(e) => {
                            eprintln!("reclab: {peer}: cannot reach {}:{}: {e:#}", t.vm, t.port);
                            continue;
                        }
                    };
                    tracing::info!(%peer, vm = %t.vm, port = t.port, "forwarding a connection");
                    if client.set_nonblocking(false).is_err() {
                        continue;
                    }
                    {
                        let mut o = open.lock().unwrap_or_else(|e| e.into_inner());
                        o.extend(client.try_clone().ok());
                        o.extend(upstream.try_clone().ok());
                    }
                    scope.spawn(move || pump(client, upstream));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => break Err(e).context("accepting a connection"),
            }
        };
        for c in open.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = c.shutdown(Shutdown::Both);
        }
        result
    });
    drop(listener);
    result
}

/// Copy both ways until either side closes.
fn pump(a: TcpStream, b: TcpStream) {
    let (Ok(mut a2), Ok(mut b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let (mut a, mut b) = (a, b);
        let _ = std::io::copy(&mut a, &mut b);
        let _ = b.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut b2, &mut a2);
    let _ = a2.shutdown(Shutdown::Write);
    let _ = up.join();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_vm_colon_port() {
        assert_eq!(parse_target("db:80").unwrap(), ("db".into(), 80));
        for bad in ["db", "db:0", "db:70000", ":80", "db:http"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }
}
