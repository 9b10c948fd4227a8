//! Loading the BPF programs, attaching them to a process (exact mode: probes stay attached), and
//! taking in their events. `abi` mirrors the kernel-side structs; `launch` starts a command held
//! before exec so it is traced from its first instruction.
pub mod abi;
pub mod budget;
pub mod calibrate;
pub mod events;
pub mod launch;
pub mod session;
