//! The libvirt implementation of [`super::Hypervisor`]: the only module that imports `virt`.
