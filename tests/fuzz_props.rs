//! Fuzzing of the lab-file parser and the domain XML rewrite with property tests: generated
//! domains (every device kind reclab knows, and some it does not), and the seed corpus in
//! `fuzz/corpus/` mutated line by line and byte by byte. The invariants live in
//! `tests/fuzzing/mod.rs`, shared with the libFuzzer targets in `fuzz/`.
//!
//! `cargo test` runs a fixed, reproducible number of cases (`RECLAB_FUZZ_CASES`, default 256
//! per strategy). `RECLAB_FUZZ_SECONDS=600` keeps going with fresh random seeds for that long
//! (`scripts/fuzz`). A failing input is shrunk and written to
//! `$RECLAB_DEV_DIR/fuzz-findings/`.

mod fuzzing;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use std::time::{Duration, Instant};

/// Run `check` on inputs from `strategy`: a fixed number of cases, or for
/// `RECLAB_FUZZ_SECONDS` with a new seed per round.
/// `share` is this strategy's part of the target's `RECLAB_FUZZ_SECONDS`.
fn fuzz<S>(name: &str, share: f64, strategy: S, check: fn(&[u8]) -> Result<(), String>)
where
    S: Strategy,
    S::Value: AsRef<[u8]>,
{
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let seconds = env("RECLAB_FUZZ_SECONDS").map(|s| (s as f64 * share).ceil() as u64);
    let cases = env("RECLAB_FUZZ_CASES").unwrap_or(256) as u32;
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let mut round: u64 = 0;
    let mut total: u64 = 0;
    loop {
        // Round 0 is the same in every CI run; long runs draw fresh seeds after it.
        let seed: [u8; 32] = if round == 0 {
            [7; 32]
        } else {
            rand_seed(round)
        };
        let config = Config {
            cases: if seconds.is_some() {
                cases.max(1000)
            } else {
                cases
            },
            failure_persistence: None,
            max_shrink_iters: 4096,
            ..Config::default()
        };
        let mut runner = TestRunner::new_with_rng(
            config.clone(),
            TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
        );
        let result = runner.run(&strategy, |input| {
            check(input.as_ref()).map_err(TestCaseError::fail)
        });
        total += config.cases as u64;
        if let Err(e) = result {
            let detail = match &e {
                TestError::Fail(reason, input) => {
                    let saved = save_finding(name, input.as_ref());
                    format!("{reason}\nminimal input saved to {saved}")
                }
                TestError::Abort(reason) => format!("aborted: {reason}"),
            };
            panic!("{name}: finding after {total} cases (round {round}): {detail}");
        }
        round += 1;
        match deadline {
            Some(d) if Instant::now() < d => {}
            _ => break,
        }
    }
    eprintln!("{name}: {total} cases in {round} round(s), no finding");
}

fn rand_seed(round: u64) -> [u8; 32] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(&nanos.to_le_bytes());
    seed[16..24].copy_from_slice(&round.to_le_bytes());
    seed[24..28].copy_from_slice(&std::process::id().to_le_bytes());
    seed
}

fn save_finding(name: &str, input: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let dir = std::env::var_os("RECLAB_DEV_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/tmp/reclab-dev".into())
        .join("fuzz-findings");
    let path = dir.join(format!(
        "{name}-{}",
        &hex::encode(Sha256::digest(input))[..16]
    ));
    match std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, input)) {
        Ok(()) => path.display().to_string(),
        Err(e) => format!("(not saved: {e})"),
    }
}

// ------------------------------------------------------------------ mutations of the corpus

#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    Insert(usize, String),
    ReplaceByte(usize, u8),
    DeleteBytes(usize, usize),
    Truncate(usize),
}

fn mutation(dictionary: &'static [&'static str]) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => any::<usize>().prop_map(Mutation::DeleteLine),
        1 => any::<usize>().prop_map(Mutation::DuplicateLine),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        3 => (any::<usize>(), prop::sample::select(dictionary))
            .prop_map(|(at, s)| Mutation::Insert(at, s.to_string())),
        1 => (any::<usize>(), "[ -~\n]{1,12}").prop_map(|(at, s)| Mutation::Insert(at, s)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::ReplaceByte(at, b)),
        1 => (any::<usize>(), 1usize..64).prop_map(|(at, n)| Mutation::DeleteBytes(at, n)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let mut lines: Vec<Vec<u8>> = bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
        let n = lines.len();
        match m {
            Mutation::DeleteLine(i) if n > 1 => {
                lines.remove(i % n);
                bytes = lines.join(&b'\n');
            }
            Mutation::DuplicateLine(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
                bytes = lines.join(&b'\n');
            }
            Mutation::SwapLines(a, b) => {
                lines.swap(a % n, b % n);
                bytes = lines.join(&b'\n');
            }
            Mutation::Insert(at, s) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, s.bytes());
            }
            Mutation::ReplaceByte(at, b) if !bytes.is_empty() => {
                let at = at % bytes.len();
                bytes[at] = *b;
            }
            Mutation::DeleteBytes(at, k) if !bytes.is_empty() => {
                let at = at % bytes.len();
                let end = (at + k).min(bytes.len());
                bytes.drain(at..end);
            }
            Mutation::Truncate(at) => {
                let at = at % (bytes.len() + 1);
                bytes.truncate(at);
            }
            _ => {}
        }
    }
    bytes
}

fn mutated_corpus(
    target: &str,
    dictionary: &'static [&'static str],
) -> impl Strategy<Value = Vec<u8>> + use<> {
    let seeds = fuzzing::corpus(target);
    assert!(!seeds.is_empty(), "the {target} corpus is empty");
    (
        prop::sample::select(seeds),
        prop::collection::vec(mutation(dictionary), 1..6),
    )
        .prop_map(|(seed, ms)| apply(seed, &ms))
}

// ------------------------------------------------------------------ the lab file

const TOML_WORDS: &[&str] = &[
    "[[vm]]\n",
    "[segment.lan]\n",
    "[segment.lan.services]\n",
    "[[check]]\n",
    "name = \"x\"\n",
    "name = \"db\"\n",
    "after = [\"db\"]\n",
    "after = [\"app\", \"app\"]\n",
    "tier = 0\n",
    "tier = -1\n",
    "tier = 99999999999999999999\n",
    "ttl = \"0s\"\n",
    "ttl = \"99999999999h\"\n",
    "ready = { timeout = \"1ns\", tcp = 0 }\n",
    "ready = { tcp = 65536 }\n",
    "from = { domain = \"\", snapshot = \"\" }\n",
    "from = { xml = \"a.xml\", disks = { vda = \"\" } }\n",
    "dhcp = { ip = \"10.20.0.300\" }\n",
    "dhcp = { ip = \"10.20.0.10\", mac = \"zz:zz\" }\n",
    "address = \"10.20.0.1/33\"\n",
    "address = \"10.20.0.1/0\"\n",
    "hosts = { \"\" = \"1.2.3.4\" }\n",
    "production = []\n",
    "accel = \"kvm\"\n",
    "connect = \"\"\n",
    "kind = \"sql\"\n",
    "\"\u{0}\" = 1\n",
    "=",
    "[",
    "]",
    "{",
    "}",
    "\"",
    "'''",
    "\n",
    "é",
    "\u{202e}",
];

fn generated_lab() -> impl Strategy<Value = String> {
    let name = "[a-z][a-z0-9-]{0,24}|[A-Z_ .]{1,4}|";
    let vm = (
        name,
        prop::option::of(0i64..4),
        prop::collection::vec(name, 0..3),
    )
        .prop_map(|(n, tier, after)| {
            let mut s = format!(
                "[[vm]]\nname = {n:?}\nfrom = {{ domain = \"prod-{n}\", snapshot = \"nightly\" }}\n"
            );
            if let Some(t) = tier {
                s.push_str(&format!("tier = {t}\n"));
            }
            if !after.is_empty() {
                s.push_str(&format!("after = {after:?}\n"));
            }
            s
        });
    (
        name,
        prop::collection::vec(vm, 0..5),
        prop::bool::ANY,
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}/[0-9]{1,2}",
    )
        .prop_map(|(lab, vms, services, cidr)| {
            let mut s = format!("name = {lab:?}\n[segment.lan]\n");
            if services {
                s.push_str(&format!(
                    "[segment.lan.services]\naddress = {cidr:?}\ndhcp = true\n"
                ));
            }
            for v in vms {
                s.push_str(&v);
            }
            s
        })
}

#[test]
fn the_lab_file_parser_never_panics_and_names_the_file() {
    fuzz(
        "lab_file-mutated",
        0.5,
        mutated_corpus("lab_file", TOML_WORDS),
        fuzzing::lab_file,
    );
    fuzz(
        "lab_file-generated",
        0.25,
        generated_lab(),
        fuzzing::lab_file,
    );
    fuzz(
        "lab_file-bytes",
        0.25,
        prop::collection::vec(any::<u8>(), 0..256),
        fuzzing::lab_file,
    );
}

// ------------------------------------------------------------------ the domain rewrite

const XML_WORDS: &[&str] = &[
    "<hostdev mode='subsystem' type='pci'><source><address domain='0' bus='1' slot='0' function='0'/></source></hostdev>",
    "<interface type='direct'><mac address='52:54:00:00:00:99'/><source dev='eth0' mode='bridge'/></interface>",
    "<interface type='hostdev' managed='yes'><mac address='52:54:00:00:00:97'/><driver name='vfio'/><source><address type='pci' domain='0' bus='3' slot='16' function='2'/></source></interface>",
    "<interface type='vhostuser'><mac address='52:54:00:00:00:96'/><source type='unix' path='/run/vhu' mode='client'/><backend tap='/dev/net/tun' vhost='/dev/vhost-net'/></interface>",
    "<memory model='nvdimm' access='shared'><source><path>/srv/pmem.img</path></source><target><size unit='KiB'>1024</size></target></memory>",
    "<pstore backend='acpi-erst'><path>/var/lib/x.pstore</path><size unit='KiB'>8</size></pstore>",
    "<lease><lockspace>s</lockspace><key>k</key><target path='/var/lib/sanlock/s'/></lease>",
    "<audio id='1' type='pulseaudio' serverName='tcp:10.0.0.1'/>",
    "<graphics type='sdl' display=':0' xauth='/root/.Xauthority'/>",
    "<smartcard mode='host-certificates'><certificate>a</certificate><database>/etc/pki/nssdb</database></smartcard>",
    "<interface type='bridge'><mac address='52:54:00:00:00:98'/><source bridge='br9'/></interface>",
    "<interface type='network'><source network='prod'/></interface>",
    "<graphics type='vnc' listen='0.0.0.0'><listen type='network' network='prod'/></graphics>",
    "<graphics type='spice' port='5901'><listen type='socket'/></graphics>",
    "<graphics type='rdp'/>",
    "<filesystem type='mount'><source dir='/'/><target dir='host'/></filesystem>",
    "<shmem name='x'/>",
    "<redirdev bus='usb' type='tcp'><source mode='connect' host='1.2.3.4' service='4000'/></redirdev>",
    "<serial type='tcp'><source mode='connect' host='10.0.0.1' service='23'/></serial>",
    "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>",
    "<disk type='network' device='disk'><source protocol='rbd' name='p/x'/><target dev='vdz'/></disk>",
    "<disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='hdc'/></disk>",
    "<foo:bar xmlns:foo='urn:foo' a='1'><foo:baz/></foo:bar>",
    "<qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'><qemu:arg value='-netdev'/></qemu:commandline>",
    "<reclab:lab xmlns:reclab='https://reclab.dev/xmlns/lab/1'><reclab:run>x</reclab:run></reclab:lab>",
    "<!-- comment -->",
    "<![CDATA[<devices/>]]>",
    "<?pi x?>",
    "&amp;",
    "&lt;",
    "&#x41;",
    "'",
    "\"",
    "<",
    ">",
    "/>",
    "</devices>",
    "<devices>",
    "xmlns='urn:default'",
];

fn mac() -> impl Strategy<Value = String> {
    (any::<u8>(), any::<u8>()).prop_map(|(a, b)| format!("52:54:00:aa:{a:02x}:{b:02x}"))
}

/// Attribute-safe random text (escaped for single quotes).
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ./_&<>'\"-]{0,12}".prop_map(|s| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('\'', "&apos;")
            .replace('"', "&quot;")
    })
}

fn device() -> impl Strategy<Value = String> {
    let disk = (
        prop::sample::select(vec!["file", "block"]),
        prop::sample::select(vec!["vda", "vdb", "sda", "hdb"]),
        prop::bool::ANY,
        text(),
    )
        .prop_map(|(kind, dev, extra, t)| {
            let src = if kind == "file" { "file" } else { "dev" };
            let extra = if extra {
                format!("<serial>{t}</serial><vendor:tag xmlns:vendor='urn:vendor' v='{t}'/>")
            } else {
                String::new()
            };
            format!(
                "<disk type='{kind}' device='disk'><driver name='qemu' type='raw'/><source {src}='/prod/{dev}.img'/><target dev='{dev}' bus='virtio'/>{extra}</disk>"
            )
        });
    let iface = (
        prop::sample::select(vec![
            "network", "bridge", "ethernet", "direct", "user", "hostdev", "vhostuser", "mcast",
            "udp", "server", "client", "vdpa", "null",
        ]),
        prop::option::of(mac()),
        prop::sample::select(vec!["prod", "other", "br0", "br1", ""]),
        prop::bool::ANY,
    )
        .prop_map(|(kind, mac, src, extra)| {
            let mac = mac
                .map(|m| format!("<mac address='{m}'/>"))
                .unwrap_or_default();
            let source = match kind {
                "network" => format!("<source network='{src}'/>"),
                "bridge" => format!("<source bridge='{src}'/>"),
                "direct" => "<source dev='eth0' mode='bridge'/>".to_string(),
                _ => String::new(),
            };
            let extra = if extra {
                "<target dev='vnet7'/><vlan><tag id='42'/></vlan><bandwidth><inbound average='1000'/></bandwidth><rom bar='off'/>"
            } else {
                ""
            };
            format!("<interface type='{kind}'>{mac}{source}<model type='virtio'/>{extra}</interface>")
        });
    let graphics = (
        prop::sample::select(vec!["vnc", "spice", "rdp", "sdl", "egl-headless"]),
        prop::sample::select(vec![
            "",
            " listen='0.0.0.0'",
            " listen='127.0.0.1'",
            " port='5900' autoport='no'",
        ]),
        prop::sample::select(vec![
            "",
            "<listen type='address' address='0.0.0.0'/>",
            "<listen type='network' network='prod'/>",
            "<listen type='socket' socket='/tmp/s'/>",
            "<listen type='none'/><listen type='address' address='::'/>",
        ]),
    )
        .prop_map(|(kind, attrs, listen)| {
            format!("<graphics type='{kind}'{attrs}>{listen}</graphics>")
        });
    let chardev = (
        prop::sample::select(vec!["serial", "console", "channel", "parallel"]),
        prop::sample::select(vec![
            "pty", "file", "tcp", "unix", "udp", "dev", "pipe", "null", "spicevmc",
        ]),
        prop::bool::ANY,
    )
        .prop_map(|(dev, kind, log)| {
            let source = match kind {
                "file" => "<source path='/var/log/prod.log'/>",
                "tcp" => "<source mode='connect' host='10.1.1.1' service='23'/>",
                "unix" => "<source mode='bind' path='/run/x.sock'/>",
                "dev" | "pipe" => "<source path='/dev/ttyS0'/>",
                _ => "",
            };
            let log = if log {
                "<log file='/var/log/libvirt/qemu/prod-serial.log' append='on'/>"
            } else {
                ""
            };
            let target = match dev {
                "channel" => "<target type='virtio' name='org.qemu.guest_agent.0'/>",
                _ => "<target port='0'/>",
            };
            format!("<{dev} type='{kind}'>{source}{log}{target}</{dev}>")
        });
    let other = prop::sample::select(vec![
        "<hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/><product id='0x5678'/></source></hostdev>",
        "<redirdev bus='usb' type='spicevmc'/>",
        "<filesystem type='mount' accessmode='passthrough'><source dir='/srv'/><target dir='srv'/></filesystem>",
        "<shmem name='ivshmem'><model type='ivshmem-plain'/><size unit='M'>4</size></shmem>",
        "<input type='passthrough' bus='virtio'><source evdev='/dev/input/event1'/></input>",
        "<input type='evdev'><source dev='/dev/input/event2'/></input>",
        "<input type='tablet' bus='usb'/>",
        "<smartcard mode='passthrough' type='tcp'><source mode='bind' host='127.0.0.1' service='2001'/></smartcard>",
        "<tpm model='tpm-tis'><backend type='passthrough'><device path='/dev/tpm0'/></backend></tpm>",
        "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>",
        "<rng model='virtio'><backend model='egd' type='tcp'><source mode='connect' host='1.2.3.4' service='1234'/></backend></rng>",
        "<vsock model='virtio'><cid auto='no' address='3'/></vsock>",
        "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='/iso/install.iso'/><target dev='hdc' bus='ide'/><readonly/></disk>",
        "<video><model type='vga' vram='16384' heads='1'/></video>",
        "<memballoon model='virtio'><stats period='10'/></memballoon>",
        "<controller type='usb' model='qemu-xhci'><address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/></controller>",
        "<watchdog model='i6300esb' action='reset'/>",
        "<sound model='ich9'><codec type='micro'/></sound>",
        "<vendor:gadget xmlns:vendor='urn:vendor:1' level='3'><vendor:part n='1'/>text</vendor:gadget>",
        "<!-- production note: do not touch -->",
        "<emulator>/usr/bin/qemu-system-x86_64</emulator>",
    ])
    .prop_map(str::to_string);
    prop_oneof![2 => disk, 3 => iface, 2 => graphics, 2 => chardev, 3 => other]
}

fn generated_domain() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["kvm", "qemu"]),
        prop::collection::vec(device(), 0..12),
        prop::sample::select(vec!["", "host-passthrough", "host-model"]),
        prop::bool::ANY,
        prop::bool::ANY,
        prop::bool::ANY,
        text(),
        prop::sample::select(vec!["\n  ", "", "\n\t", " "]),
    )
        .prop_map(|(kind, devices, cpu, meta, nvram, snapshot, title, ws)| {
            let mut s = format!(
                "<domain type='{kind}' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>{ws}<name>prod-vm</name>{ws}<title>{title}</title>"
            );
            if meta {
                s.push_str(&format!(
                    "{ws}<metadata><cmdb:asset xmlns:cmdb='urn:cmdb'><cmdb:id>{title}</cmdb:id></cmdb:asset></metadata>"
                ));
            }
            s.push_str(&format!("{ws}<memory unit='MiB'>256</memory>"));
            if !cpu.is_empty() {
                s.push_str(&format!(
                    "{ws}<cpu mode='{cpu}'><topology sockets='1' cores='2' threads='1'/></cpu>"
                ));
            }
            s.push_str(&format!("{ws}<os><type arch='x86_64'>hvm</type>"));
            if nvram {
                s.push_str("<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader><nvram>/var/lib/libvirt/qemu/nvram/prod_VARS.fd</nvram>");
            }
            s.push_str(&format!("</os>{ws}<features><acpi/><hyperv><relaxed state='on'/><vpindex state='on'/><synic state='on'/></hyperv></features>{ws}<devices>"));
            for d in devices {
                s.push_str(ws);
                s.push_str(&d);
            }
            s.push_str(&format!(
                "{ws}</devices>{ws}<qemu:commandline><qemu:arg value='-no-hpet'/></qemu:commandline>{ws}</domain>\n"
            ));
            if snapshot {
                format!("<domainsnapshot><name>nightly</name><state>disk-snapshot</state>{s}</domainsnapshot>\n")
            } else {
                s
            }
        })
}

#[test]
fn the_domain_rewrite_never_keeps_a_forbidden_device_nor_loses_what_it_does_not_model() {
    fuzz(
        "domain_xml-generated",
        0.5,
        generated_domain(),
        fuzzing::domain_xml,
    );
    fuzz(
        "domain_xml-mutated",
        0.5,
        mutated_corpus("domain_xml", XML_WORDS),
        fuzzing::domain_xml,
    );
}

/// The checks themselves must catch what they claim to catch.
#[test]
fn the_invariant_checks_catch_a_kept_host_device_and_a_lost_element() {
    let broken =
        "<domain type='qemu'><name>x</name><devices><hostdev mode='subsystem'/></devices></domain>";
    let nodes = fuzzing::nodes(broken).unwrap();
    assert_eq!(nodes.len(), 4);
    // Every seed of the corpus passes, and at least the golden inputs are really rewritten.
    let mut rewritten = 0;
    for seed in fuzzing::corpus("domain_xml") {
        fuzzing::domain_xml(&seed).unwrap();
        let xml = String::from_utf8(seed).unwrap();
        if reclab::xml::domain::rewrite_domain(&xml, &fuzzing::options(&xml)).is_ok() {
            rewritten += 1;
        }
    }
    assert!(
        rewritten >= 5,
        "only {rewritten} seeds were accepted by the rewrite"
    );
    for seed in fuzzing::corpus("lab_file") {
        fuzzing::lab_file(&seed).unwrap();
    }
}

/// Replay one saved input: `RECLAB_FUZZ_REPLAY=FILE cargo test --test fuzz_props replay --
/// --ignored --nocapture`.
#[test]
#[ignore = "replays the file named by RECLAB_FUZZ_REPLAY"]
fn replay() {
    let path = std::env::var("RECLAB_FUZZ_REPLAY").expect("RECLAB_FUZZ_REPLAY=FILE");
    let input = std::fs::read(&path).unwrap();
    let target = if path.contains("lab_file") {
        fuzzing::lab_file
    } else {
        fuzzing::domain_xml
    };
    if let Err(e) = target(&input) {
        panic!("{path}: {e}");
    }
}
