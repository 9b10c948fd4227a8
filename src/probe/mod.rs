//! The kernel side at run time, as the OS sees it: loading the BPF programs configured for one
//! process (`load`) and attaching them at its probe points (`points`) in a `session` (exact mode
//! keeps them attached, budget mode attaches and detaches them per window), starting a command held before exec so
//! it is traced from its first instruction (`launch`), measuring what one probed write costs
//! (`calibrate`), and the traced process in /proc (`process`) with the container and pod it
//! runs in (`container`); the kernel's aggregation tables mapped into this process (`tables`).
pub mod calibrate;
pub mod container;
pub mod launch;
pub mod load;
pub mod points;
pub mod process;
pub mod session;
pub mod tables;
