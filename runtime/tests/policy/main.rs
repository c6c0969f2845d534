//! The policy engine's tests, in one test binary (one link instead of
//! three): the bundle schema ([`bundle`]), LeRobot's goldens per backend and
//! precision ([`golden`]) and the safety layer ([`safety`]). The allocation
//! test (`policy_alloc.rs`) stays apart: it installs a global allocator.

#[path = "../common/mod.rs"]
mod common;

mod bundle;
mod golden;
mod safety;
