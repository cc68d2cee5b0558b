//! Operations around drills: notifications, the Prometheus textfile, systemd schedules,
//! MQTT-triggered drills on a fleet of lab hosts (docs/fleet.md) and lab expiry (see
//! docs/operations.md).

pub mod expiry;
pub mod fleet;
pub mod listen;
pub mod metrics;
pub mod notify;
pub mod schedule;
