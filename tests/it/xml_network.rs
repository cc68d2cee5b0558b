//! The lab network XML and the isolation check of live networks.

use reclab::xml::network::{check_isolated, isolated_network_xml, validate_bridge_name};

const UUID: &str = "5d3c1b2a-0f9e-4d8c-b7a6-958473625140";

#[test]
fn the_lab_network_is_a_bare_bridge() {
    let xml = isolated_network_xml("reclab-1a2b3c4d-lan", "rl1a2b3c4d-0", UUID);
    expect_test::expect_file!["../golden/network/isolated.xml"].assert_eq(&xml);
    assert_eq!(check_isolated(&xml, "rl1a2b3c4d-0"), Ok(()));
}

#[test]
fn names_are_escaped_in_the_lab_network() {
    let xml = isolated_network_xml("a<b&c", "rl0", UUID);
    assert!(xml.contains("<name>a&lt;b&amp;c</name>"), "{xml}");
}

#[test]
fn libvirts_default_nat_network_is_reported_on_every_count() {
    // What `virsh net-dumpxml default` shows on a stock Debian host.
    let live = "<network>
  <name>default</name>
  <uuid>8f2e5b1c-3d4a-4e6f-9b0c-7d8e9f0a1b2c</uuid>
  <forward mode='nat'>
    <nat>
      <port start='1024' end='65535'/>
    </nat>
  </forward>
  <bridge name='virbr0' stp='on' delay='0'/>
  <mac address='52:54:00:12:34:56'/>
  <dns>
    <forwarder addr='192.0.2.53'/>
  </dns>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
";
    let problems = check_isolated(live, "rl1a2b3c4d-0").unwrap_err();
    assert_eq!(
        problems,
        vec![
            "network 'default' uses bridge 'virbr0' instead of 'rl1a2b3c4d-0'",
            "network 'default' has <forward mode='nat'>: the lab would reach outside",
            "network 'default' has dns <forwarder>s: names would be resolved outside",
            "network 'default' has <ip address='192.168.122.1'>: the host would have an address on the lab bridge",
        ]
    );
}

#[test]
fn a_live_lab_network_with_the_mac_libvirt_adds_is_still_isolated() {
    let live = "<network>
  <name>reclab-1a2b3c4d-lan</name>
  <uuid>5d3c1b2a-0f9e-4d8c-b7a6-958473625140</uuid>
  <bridge name='rl1a2b3c4d-0' stp='off' delay='0'/>
  <mac address='52:54:00:aa:bb:cc'/>
</network>
";
    assert_eq!(check_isolated(live, "rl1a2b3c4d-0"), Ok(()));
}

#[test]
fn open_vswitch_portgroups_routes_and_dnsmasq_options_are_reported() {
    let live = "<network xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'>
  <name>lab</name>
  <bridge name='rl0'/>
  <virtualport type='openvswitch'/>
  <portgroup name='trunk'>
    <virtualport type='openvswitch'/>
  </portgroup>
  <route address='192.0.2.0' prefix='24' gateway='10.0.0.1'/>
  <dns forwardPlainNames='yes'/>
  <dnsmasq:options>
    <dnsmasq:option value='server=192.0.2.53'/>
  </dnsmasq:options>
</network>";
    assert_eq!(
        check_isolated(live, "rl0").unwrap_err(),
        vec![
            "network 'lab' has <virtualport type='openvswitch'>: the bridge is not a plain linux bridge",
            "network 'lab' has <portgroup name='trunk'> with a <virtualport>",
            "network 'lab' has a <route>: the host would route lab traffic",
            "network 'lab' forwards plain dns names outside",
            "network 'lab' passes raw options to dnsmasq",
        ]
    );
}

#[test]
fn unparseable_or_foreign_xml_is_a_problem_not_a_pass() {
    assert!(check_isolated("<network><name>x</network>", "rl0").is_err());
    assert_eq!(
        check_isolated("<domain/>", "rl0").unwrap_err(),
        vec!["expected a <network>, found <domain>"]
    );
}

#[test]
fn bridge_names_must_fit_linux() {
    assert!(validate_bridge_name("rl1a2b3c4d-0").is_ok());
    assert!(validate_bridge_name("abcdefghijklmno").is_ok());
    let err = |name: &str| format!("{:#}", validate_bridge_name(name).unwrap_err());
    assert_eq!(
        err("reclab-1a2b3c4d-lan"),
        "bridge name 'reclab-1a2b3c4d-lan' has 19 characters, linux allows at most 15"
    );
    assert_eq!(
        err("br.prod"),
        "bridge name 'br.prod' contains '.', use only letters, digits, '-' and '_'"
    );
    assert_eq!(
        err("br 0"),
        "bridge name 'br 0' contains ' ', use only letters, digits, '-' and '_'"
    );
    assert_eq!(err(""), "bridge name is empty");
}
