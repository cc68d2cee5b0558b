//! Operations around drills: notifications, the Prometheus textfile, systemd schedules,
//! MQTT-triggered drills and lab expiry (see docs/operations.md).

pub mod expiry;
pub mod listen;
pub mod metrics;
pub mod notify;
pub mod schedule;
