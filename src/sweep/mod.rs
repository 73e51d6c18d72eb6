//! Sweeps: a YAML file that expands one or more experiment files into many runs (methods x seeds x
//! grid points x zip rows), a stable id per run, sharding, and the results table.
//!
//! Layout of a sweep's results folder (`out`, default `results/<name>`):
//!
//! ```text
//! runs/<id>/resolved.yaml   the run's configuration as the sweep resolved it (hashes to <id>)
//! runs/<id>/...             the run folder `triadapt train` writes (config.yaml, metrics.json, ...)
//! runs/<id>/train.log       the child process's stdout and stderr
//! runs/<id>/row.json        the run's row of runs.csv, written atomically when the run ends
//! runs/<id>/claim.<g>.json  while a process runs it: who (claim.rs)
//! runs.csv                  regenerated from every row.json (temporary file + rename)
//! ```
//!
//! A row file exists only for a run that ended (finished or failed), and `runs.csv` is always
//! rebuilt from the row files as a whole, so a process killed at any moment leaves neither a
//! partial nor a duplicated row. See README.md (section "Sweeps") for the file format.

pub mod claim;
pub mod id;
pub mod plan;
pub mod store;

pub use id::{run_id, value_text, ID_LEN};
pub use plan::{PlannedRun, Shard, Sweep};
pub use store::*;
