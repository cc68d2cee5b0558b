//! `LibvirtHv` and `agent` against a real (private) libvirtd running QEMU under TCG.
//!
//! Ignored by default. Run with a private daemon (`scripts/sandbox start NAME` starts one and
//! prints its URI; see docs/development.md), never the system one:
//!
//! ```text
//! RECLAB_TEST_LIBVIRT_URI='qemu:///system?socket=/path/to/libvirt-sock' \
//!     cargo test --test hv_real_libvirt -- --ignored --test-threads=1
//! ```
//!
//! The guest-agent test also needs the test guests in `$RECLAB_DEV_DIR/guests`
//! (default `/var/tmp/reclab-dev/guests`: `vmlinuz`, `initrd.img`, `db.qcow2`, `guests.json`)
//! and `qemu-img`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use reclab::hv::agent::{self, ExecOpts};
use reclab::hv::libvirt::LibvirtHv;
use reclab::hv::{DomState, Hypervisor};
use sha2::{Digest, Sha256};

fn real_hv() -> LibvirtHv {
    let uri = std::env::var("RECLAB_TEST_LIBVIRT_URI")
        .expect("set RECLAB_TEST_LIBVIRT_URI to a private daemon, e.g. qemu:///system?socket=/path/libvirt-sock");
    assert!(
        uri.contains("socket=") || uri.starts_with("test:"),
        "refusing to use a system daemon: {uri}"
    );
    LibvirtHv::open(&uri).unwrap()
}

/// Destroys the domain when the test ends, also on panic.
struct Cleanup<'a>(&'a dyn Hypervisor, &'a str);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.0.destroy_domain(self.1);
    }
}

/// Decode a PNG into (width, height, pixel bytes).
fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).unwrap();
    buf.truncate(frame.buffer_size());
    (frame.width, frame.height, buf)
}

#[test]
#[ignore = "needs a private libvirtd: scripts/test starts one and sets RECLAB_TEST_LIBVIRT_URI"]
fn screenshot_of_an_idle_seabios_vm_is_a_non_blank_png() {
    let hv = real_hv();
    let name = "reclab-hvtest-bios";
    let _ = hv.destroy_domain(name);
    // A domain without an agent channel: the agent is "not configured", which is not the
    // transient "unavailable" a caller would wait out.
    let err = hv
        .agent_command("no-such-vm", r#"{"execute":"guest-ping"}"#, 1)
        .unwrap_err();
    assert!(reclab::hv::HvError::is_not_found(&err), "{err:#}");
    hv.create_domain(&format!(
        "<domain type='qemu'>
           <name>{name}</name>
           <memory unit='MiB'>64</memory>
           <vcpu>1</vcpu>
           <metadata><reclab:lab xmlns:reclab='{ns}'><reclab:name>hvtest</reclab:name>
             <reclab:run>0123abcd</reclab:run><reclab:vm>bios</reclab:vm>
             <reclab:created>2026-12-01T10:00:00Z</reclab:created>
             <reclab:expires>2026-12-01T18:00:00Z</reclab:expires></reclab:lab></metadata>
           <os><type arch='x86_64' machine='pc'>hvm</type></os>
           <devices>
             <graphics type='vnc' autoport='yes'><listen type='address' address='127.0.0.1'/></graphics>
             <video><model type='vga'/></video>
           </devices>
         </domain>",
        ns = reclab::xml::domain::RECLAB_NS,
    ))
    .unwrap();
    let _cleanup = Cleanup(&hv, name);
    assert_eq!(hv.domain_state(name).unwrap(), Some(DomState::Running));
    // The daemon returns reclab's metadata without its namespace prefix; gc's sweep reads it.
    let md = hv
        .domain_metadata(name, reclab::xml::domain::RECLAB_NS)
        .unwrap()
        .unwrap();
    assert!(md.starts_with("<lab>"), "libvirtd returned {md}");
    let m = reclab::xml::domain::parse_lab_metadata(&md).expect("metadata parses");
    assert_eq!((m.run.as_str(), m.vm.as_str()), ("0123abcd", "bios"));
    let err = hv
        .agent_command(name, r#"{"execute":"guest-ping"}"#, 1)
        .unwrap_err();
    assert!(!reclab::hv::HvError::is_agent_unavailable(&err), "{err:#}");
    eprintln!("agent on a domain without a channel: {err:#}");

    // SeaBIOS needs a moment under TCG to paint its banner.
    let started = Instant::now();
    let (w, h, distinct) = loop {
        let (w, h, pixels) = decode_png(&hv.screenshot(name).unwrap());
        let first = &pixels[..3];
        let distinct = pixels.chunks(3).filter(|p| *p != first).count();
        if distinct > 0 || started.elapsed() > Duration::from_secs(30) {
            break (w, h, distinct);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!(
        "screenshot {w}x{h}, {distinct} pixels differ from the first, after {:?}",
        started.elapsed()
    );
    assert!(w >= 320 && h >= 200, "{w}x{h}");
    assert!(distinct > 0, "the screen stayed blank");

    assert!(hv.destroy_domain(name).unwrap());
    assert_eq!(hv.domain_state(name).unwrap(), None);
}

fn guests_dir() -> PathBuf {
    let dev = std::env::var("RECLAB_DEV_DIR").unwrap_or_else(|_| "/var/tmp/reclab-dev".into());
    PathBuf::from(dev).join("guests")
}

/// Deterministic, incompressible-looking test data.
fn test_bytes(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
#[ignore = "needs a private libvirtd and the test guests: scripts/test starts one and sets RECLAB_TEST_LIBVIRT_URI"]
fn guest_agent_exec_and_file_transfer_on_a_real_guest() {
    let hv = real_hv();
    let guests = guests_dir();
    let info: serde_json::Value = serde_json::from_slice(
        &std::fs::read(guests.join("guests.json")).expect("test guests not built"),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let overlay = work.path().join("db.qcow2");
    let status = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(guests.join("db.qcow2"))
        .arg(&overlay)
        .status()
        .unwrap();
    assert!(status.success(), "qemu-img create failed");

    let name = "reclab-hvtest-db";
    let _ = hv.destroy_domain(name);
    hv.create_domain(&format!(
        "<domain type='qemu'>
           <name>{name}</name>
           <memory unit='MiB'>256</memory>
           <vcpu>1</vcpu>
           <metadata><reclab:run xmlns:reclab='https://reclab.example/ns/run/1' id='hvtest'/></metadata>
           <os>
             <type arch='x86_64' machine='pc'>hvm</type>
             <kernel>{kernel}</kernel>
             <initrd>{initrd}</initrd>
             <cmdline>{cmdline}</cmdline>
           </os>
           <features><acpi/><apic/></features>
           <devices>
             <disk type='file' device='disk'>
               <driver name='qemu' type='qcow2'/>
               <source file='{overlay}'/>
               <target dev='vda' bus='virtio'/>
             </disk>
             <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
             <serial type='pty'/>
             <memballoon model='none'/>
           </devices>
         </domain>",
        kernel = guests.join("vmlinuz").display(),
        initrd = guests.join("initrd.img").display(),
        cmdline = info["cmdline"].as_str().unwrap(),
        overlay = overlay.display(),
    ))
    .unwrap();
    let _cleanup = Cleanup(&hv, name);
    let md = hv
        .domain_metadata(name, "https://reclab.example/ns/run/1")
        .unwrap();
    assert_eq!(md.as_deref(), Some("<run id=\"hvtest\"/>"));

    // Early in boot the agent is not connected yet: that is the "unavailable" callers wait out.
    if let Err(err) = hv.agent_command(name, r#"{"execute":"guest-ping"}"#, 1) {
        eprintln!("agent right after start: {err:#}");
        assert!(reclab::hv::HvError::is_agent_unavailable(&err), "{err:#}");
    }

    let took = agent::wait_ready(
        &hv,
        name,
        Duration::from_secs(90),
        Duration::from_millis(200),
        &reclab::base::cancel::Cancel::new(),
    )
    .unwrap();
    eprintln!("guest agent answered after {took:?}");
    let ga = agent::require(
        &hv,
        name,
        &["guest-exec", "guest-exec-status", "guest-file-open"],
    )
    .unwrap();
    eprintln!(
        "qemu-ga {} with {} commands",
        ga.version,
        ga.supported.len()
    );

    let out = agent::exec(&hv, name, "/bin/hostname", &[], &ExecOpts::default()).unwrap();
    assert_eq!((out.exit_code, out.stdout_lossy().trim()), (0, "db"));
    let out = agent::sh(
        &hv,
        name,
        "echo to-stderr >&2; exit 7",
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(
        (out.exit_code, out.stderr_lossy().as_str()),
        (7, "to-stderr\n")
    );
    let opts = ExecOpts {
        stdin: Some(b"piped".to_vec()),
        ..ExecOpts::default()
    };
    assert_eq!(
        agent::exec(&hv, name, "/bin/cat", &[], &opts)
            .unwrap()
            .stdout,
        b"piped"
    );

    // Three chunks, the last one partial.
    let data = test_bytes(2 * agent::FILE_CHUNK + 12345);
    let started = Instant::now();
    agent::write_file(&hv, name, "/tmp/pushed.bin", &data, Some(0o640)).unwrap();
    eprintln!("pushed {} bytes in {:?}", data.len(), started.elapsed());
    let out = agent::exec(
        &hv,
        name,
        "/usr/bin/sha256sum",
        &["/tmp/pushed.bin"],
        &ExecOpts::default(),
    )
    .unwrap();
    let want = hex::encode(Sha256::digest(&data));
    assert!(
        out.stdout_lossy().starts_with(&want),
        "{}",
        out.stdout_lossy()
    );
    let out = agent::sh(
        &hv,
        name,
        "stat -c %a /tmp/pushed.bin",
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(out.stdout_lossy().trim(), "640");
    assert_eq!(
        agent::read_file(&hv, name, "/tmp/pushed.bin", data.len()).unwrap(),
        data
    );
    assert!(agent::read_file(&hv, name, "/tmp/pushed.bin", data.len() - 1).is_err());

    // Hot-plug a raw data disk (PCI hot-plug needs <acpi/>), see it in the guest, unplug it;
    // a second unplug is a no-op.
    let img = work.path().join("inject.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let disk = format!(
        "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{}'/>\
         <target dev='vdb' bus='virtio'/><readonly/></disk>",
        img.display()
    );
    hv.attach_disk(name, &disk, true).unwrap();
    let seen = "for i in $(seq 50); do [ -b /dev/vdb ] && exit 0; sleep 0.1; done; exit 1";
    assert!(
        agent::sh(&hv, name, seen, Duration::from_secs(10))
            .unwrap()
            .success(),
        "/dev/vdb never showed up"
    );
    assert!(hv.detach_disk(name, &disk).unwrap());
    let gone = "for i in $(seq 50); do [ -b /dev/vdb ] || exit 0; sleep 0.1; done; exit 1";
    assert!(
        agent::sh(&hv, name, gone, Duration::from_secs(10))
            .unwrap()
            .success(),
        "/dev/vdb never went away"
    );
    assert!(!hv.detach_disk(name, &disk).unwrap());

    let err = agent::sh(&hv, name, "sleep 30", Duration::from_secs(1)).unwrap_err();
    assert!(
        format!("{err:#}").contains("may still be running"),
        "{err:#}"
    );

    assert!(hv.destroy_domain(name).unwrap());
}
